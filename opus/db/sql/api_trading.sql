-- Holds, purchases and availability changes made through the REST API.
-- Every step that decides something locks the stone's row first, so holds and purchases of one stone
-- are decided one at a time; no lock is ever held while the feed is called.

-- name: get_diamond
SELECT * FROM diamonds WHERE id = %(id)s

-- name: lock_diamond
SELECT id, supplier_stone_id, offer_id, availability, status, hold_id, price
FROM diamonds WHERE id = %(id)s
FOR UPDATE

-- name: expire_stale_holds
-- A 'pending' row older than the feed can take to answer belongs to a process that died mid-call; an
-- 'active' hold past its end has lapsed at the feed. Neither may keep the stone from being held again.
UPDATE hold_history
SET status = CASE WHEN status = 'pending' THEN 'failed' ELSE 'released' END,
    reason = CASE WHEN status = 'pending' THEN 'abandoned: no answer was recorded' ELSE 'expired' END,
    released_at = CASE WHEN status = 'active' THEN %(now)s ELSE released_at END
WHERE diamond_id = %(diamond_id)s
  AND ((status = 'pending' AND created_at < %(pending_before)s)
       OR (status = 'active' AND held_until IS NOT NULL AND held_until < %(now)s))

-- name: live_hold
SELECT * FROM hold_history
WHERE diamond_id = %(diamond_id)s AND status IN ('pending', 'active')

-- name: insert_pending_hold
INSERT INTO hold_history (diamond_id, status, requested_by, created_at)
VALUES (%(diamond_id)s, 'pending', %(requested_by)s, %(now)s)
RETURNING id

-- name: finish_hold
UPDATE hold_history
SET status = %(status)s, feed_hold_id = %(feed_hold_id)s, held_until = %(held_until)s, reason = %(reason)s,
    released_at = %(released_at)s
WHERE id = %(id)s
RETURNING *

-- name: settle_pending_hold
-- Only a hold still pending is settled: one ended meanwhile (an admin's override, or abandoned as stale) stays
-- ended, and no row comes back.
UPDATE hold_history
SET status = %(status)s, feed_hold_id = %(feed_hold_id)s, held_until = %(held_until)s, reason = %(reason)s
WHERE id = %(id)s AND status = 'pending'
RETURNING *

-- name: end_live_holds
UPDATE hold_history SET status = 'released', released_at = %(now)s, reason = %(reason)s
WHERE diamond_id = %(diamond_id)s AND status IN ('pending', 'active')

-- name: active_hold
SELECT * FROM hold_history
WHERE diamond_id = %(diamond_id)s AND status = 'active'

-- name: release_active_holds
UPDATE hold_history SET status = 'released', released_at = %(now)s, reason = %(reason)s
WHERE diamond_id = %(diamond_id)s AND status = 'active'

-- name: open_purchase
SELECT id, status, requested_by FROM purchase_history
WHERE diamond_id = %(diamond_id)s AND status IN ('pending', 'placed')

-- name: set_availability
-- The old value is read under the row lock so the history records exactly the transition made.
WITH old AS (
    SELECT id, availability FROM diamonds WHERE id = %(id)s FOR UPDATE
), changed AS (
    UPDATE diamonds d
    SET availability = %(availability)s,
        hold_id = CASE WHEN %(set_hold_id)s THEN %(hold_id)s::text ELSE d.hold_id END,
        updated_at = %(now)s
    FROM old WHERE d.id = old.id
    RETURNING d.id
), history AS (
    INSERT INTO availability_history (diamond_id, old_value, new_value, changed_by, reason, created_at)
    SELECT old.id, old.availability, %(availability)s, %(changed_by)s, %(reason)s, %(now)s FROM old
)
SELECT old.availability AS old_value FROM old

-- name: purchase_by_key
SELECT * FROM purchase_history WHERE idempotency_key = %(key)s

-- name: insert_pending_purchase
INSERT INTO purchase_history (diamond_id, idempotency_key, status, price, requested_by, reference,
                              customer_order_number, created_at)
VALUES (%(diamond_id)s, %(key)s, 'pending', %(price)s, %(requested_by)s, %(reference)s,
        %(customer_order_number)s, %(now)s)
RETURNING id

-- name: finish_purchase
-- Only a purchase still pending is finished: one an operator resolved meanwhile keeps that resolution (and the
-- answer its key gives), and no row comes back.
UPDATE purchase_history
SET status = %(status)s, feed_order_id = %(feed_order_id)s, error = %(error)s, completed_at = %(now)s,
    response_status = %(response_status)s, response_body = %(response_body)s, resolved_by = %(resolved_by)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id

-- name: purchase_by_id
SELECT * FROM purchase_history WHERE id = %(id)s

-- name: pending_purchases
-- What an operator needs to find each one in Nivoda: the stone's offer and supplier ids, the customer order
-- number sent, when it started.
SELECT p.*, d.offer_id, d.supplier_stone_id
FROM purchase_history p JOIN diamonds d ON d.id = p.diamond_id
WHERE p.status = 'pending' AND p.created_at < %(before)s
ORDER BY p.created_at, p.id

-- name: mark_overdue_purchases_alerted
-- Marked before the alert is raised, in one statement: two housekeepers at once alert each purchase once.
UPDATE purchase_history p
SET alerted_at = %(now)s
FROM diamonds d
WHERE d.id = p.diamond_id AND p.status = 'pending' AND p.alerted_at IS NULL AND p.created_at < %(before)s
RETURNING p.*, d.offer_id, d.supplier_stone_id
