-- Pricing rules as the API changes them, and the set-based repricing that follows every change.

-- name: lock_rules
-- Rule writers take turns: each reprices against the rules it just committed, never a half-seen mix.
LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE

-- name: list_rules
SELECT * FROM pricing_rules ORDER BY priority, id

-- name: get_rule
SELECT * FROM pricing_rules WHERE id = %(id)s

-- name: insert_rule
INSERT INTO pricing_rules (name, priority, feed, shapes, carat_min, carat_max, lab_grown, feed_price_min,
                           feed_price_max, markup_ratio, rating, active, created_at, updated_at)
VALUES (%(name)s, %(priority)s, %(feed)s, %(shapes)s, %(carat_min)s, %(carat_max)s, %(lab_grown)s,
        %(feed_price_min)s, %(feed_price_max)s, %(markup_ratio)s, %(rating)s, %(active)s, %(now)s, %(now)s)
RETURNING *

-- name: update_rule
UPDATE pricing_rules
SET name = %(name)s, priority = %(priority)s, feed = %(feed)s, shapes = %(shapes)s,
    carat_min = %(carat_min)s, carat_max = %(carat_max)s, lab_grown = %(lab_grown)s,
    feed_price_min = %(feed_price_min)s, feed_price_max = %(feed_price_max)s, markup_ratio = %(markup_ratio)s,
    rating = %(rating)s, active = %(active)s, updated_at = %(now)s
WHERE id = %(id)s
RETURNING *

-- name: delete_rule
DELETE FROM pricing_rules WHERE id = %(id)s RETURNING id

-- name: reprice
-- The same rule as opus.domain.pricing: active rules in (priority, id) order, the first match wins; min bounds
-- inclusive, max bounds exclusive, NULL matches anything. round(numeric, 2) rounds halves away from zero,
-- which for positive prices is ROUND_HALF_UP, as round_cents does. Only rows whose outcome differs are written.
UPDATE diamonds AS d
SET price = m.price, markup_ratio = m.markup_ratio, pricing_rule_id = m.rule_id, rating = m.rating,
    updated_at = %(now)s
FROM (
    SELECT s.id, r.id AS rule_id, r.markup_ratio, r.rating, round(s.feed_price * r.markup_ratio, 2) AS price
    FROM diamonds AS s
    LEFT JOIN LATERAL (
        SELECT pr.id, pr.markup_ratio, pr.rating
        FROM pricing_rules AS pr
        WHERE pr.active
          AND (pr.feed IS NULL OR pr.feed = s.feed)
          AND (pr.shapes IS NULL OR s.shape = ANY (pr.shapes))
          AND (pr.lab_grown IS NULL OR pr.lab_grown = s.lab_grown)
          AND (pr.carat_min IS NULL OR s.carats >= pr.carat_min)
          AND (pr.carat_max IS NULL OR s.carats < pr.carat_max)
          AND (pr.feed_price_min IS NULL OR s.feed_price >= pr.feed_price_min)
          AND (pr.feed_price_max IS NULL OR s.feed_price < pr.feed_price_max)
        ORDER BY pr.priority, pr.id
        LIMIT 1
    ) AS r ON true
    WHERE s.status = 'active'
) AS m
WHERE d.id = m.id
  AND (d.price IS DISTINCT FROM m.price
       OR d.pricing_rule_id IS DISTINCT FROM m.rule_id
       OR d.markup_ratio IS DISTINCT FROM m.markup_ratio
       OR d.rating IS DISTINCT FROM m.rating)
