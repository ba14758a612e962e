-- The consolidator's bulk upsert: COPY into a staging table, then one INSERT ... ON CONFLICT per batch.

-- name: create_staging
CREATE TEMP TABLE diamonds_staging ON COMMIT DROP AS
SELECT feed, supplier_stone_id, offer_id, shape, carats, color, clarity, cut, polish, symmetry, fluorescence,
       fancy_color, fancy_intensity, fancy_overtone, lab, certificate_number, lab_grown, length_mm, width_mm,
       depth_mm, depth_pct, table_pct, eye_clean, availability, hold_id, image_url, video_url, certificate_url,
       supplier_id, supplier_name, feed_price, price, markup_ratio, pricing_rule_id, rating, content_hash, run_id,
       payload_hash, mapping_version, rules_version
FROM diamonds WITH NO DATA

-- name: copy_staging
-- Columns in the order of opus.pipeline.diamond_rows.STAGING_COLUMNS (a test holds the two together).
COPY diamonds_staging (feed, supplier_stone_id, offer_id, shape, carats, lab_grown, feed_price, availability, color,
    clarity, cut, polish, symmetry, fluorescence, fancy_color, fancy_intensity, fancy_overtone, lab,
    certificate_number, length_mm, width_mm, depth_mm, depth_pct, table_pct, eye_clean, hold_id, image_url,
    video_url, certificate_url, supplier_id, supplier_name, price, markup_ratio, pricing_rule_id, rating,
    content_hash, run_id, payload_hash, mapping_version, rules_version) FROM STDIN

-- name: upsert_from_staging
-- A row whose content did not change (same hash, still active) is not rewritten.
INSERT INTO diamonds AS d (feed, supplier_stone_id, offer_id, shape, carats, color, clarity, cut, polish,
    symmetry, fluorescence, fancy_color, fancy_intensity, fancy_overtone, lab, certificate_number, lab_grown,
    length_mm, width_mm, depth_mm, depth_pct, table_pct, eye_clean, availability, hold_id, image_url, video_url,
    certificate_url, supplier_id, supplier_name, feed_price, price, markup_ratio, pricing_rule_id, rating,
    content_hash, run_id, payload_hash, mapping_version, rules_version)
SELECT feed, supplier_stone_id, offer_id, shape, carats, color, clarity, cut, polish, symmetry, fluorescence,
       fancy_color, fancy_intensity, fancy_overtone, lab, certificate_number, lab_grown, length_mm, width_mm,
       depth_mm, depth_pct, table_pct, eye_clean, availability, hold_id, image_url, video_url, certificate_url,
       supplier_id, supplier_name, feed_price, price, markup_ratio, pricing_rule_id, rating, content_hash, run_id,
       payload_hash, mapping_version, rules_version
FROM diamonds_staging
ON CONFLICT (feed, supplier_stone_id) DO UPDATE SET
    offer_id = EXCLUDED.offer_id, shape = EXCLUDED.shape, carats = EXCLUDED.carats, color = EXCLUDED.color,
    clarity = EXCLUDED.clarity, cut = EXCLUDED.cut, polish = EXCLUDED.polish, symmetry = EXCLUDED.symmetry,
    fluorescence = EXCLUDED.fluorescence, fancy_color = EXCLUDED.fancy_color,
    fancy_intensity = EXCLUDED.fancy_intensity, fancy_overtone = EXCLUDED.fancy_overtone, lab = EXCLUDED.lab,
    certificate_number = EXCLUDED.certificate_number, lab_grown = EXCLUDED.lab_grown,
    length_mm = EXCLUDED.length_mm, width_mm = EXCLUDED.width_mm, depth_mm = EXCLUDED.depth_mm,
    depth_pct = EXCLUDED.depth_pct, table_pct = EXCLUDED.table_pct, eye_clean = EXCLUDED.eye_clean,
    availability = EXCLUDED.availability, hold_id = EXCLUDED.hold_id, image_url = EXCLUDED.image_url,
    video_url = EXCLUDED.video_url, certificate_url = EXCLUDED.certificate_url,
    supplier_id = EXCLUDED.supplier_id, supplier_name = EXCLUDED.supplier_name,
    feed_price = EXCLUDED.feed_price, price = EXCLUDED.price, markup_ratio = EXCLUDED.markup_ratio,
    pricing_rule_id = EXCLUDED.pricing_rule_id, rating = EXCLUDED.rating, content_hash = EXCLUDED.content_hash,
    run_id = EXCLUDED.run_id, payload_hash = EXCLUDED.payload_hash, mapping_version = EXCLUDED.mapping_version,
    rules_version = EXCLUDED.rules_version, status = 'active', deleted_at = NULL, record_error = NULL, record_error_at = NULL,
    updated_at = now()
-- Unchanged rows are not rewritten. "Unchanged" compares everything the row holds: the mapped content by its hash,
-- and the price fields by value, because set-based repricing (a rule change) writes those without the hash; and
-- what the row was built from, so that a stone rebuilt to the same content is not rebuilt again on the next run.
WHERE d.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR d.payload_hash IS DISTINCT FROM EXCLUDED.payload_hash
   OR d.mapping_version IS DISTINCT FROM EXCLUDED.mapping_version
   OR d.rules_version IS DISTINCT FROM EXCLUDED.rules_version
   OR d.price IS DISTINCT FROM EXCLUDED.price
   OR d.markup_ratio IS DISTINCT FROM EXCLUDED.markup_ratio
   OR d.pricing_rule_id IS DISTINCT FROM EXCLUDED.pricing_rule_id
   OR d.rating IS DISTINCT FROM EXCLUDED.rating
   OR d.status <> 'active'
   OR d.record_error IS NOT NULL

-- name: lock_rules
LOCK TABLE pricing_rules IN SHARE MODE

-- name: rules_version
-- Read under `lock_rules`, with the rules themselves: the version recorded on a row is the one its price came from.
SELECT last_value AS version FROM pricing_rules_version

-- name: active_rules
SELECT id, name, priority, feed, shapes, carat_min, carat_max, lab_grown, feed_price_min, feed_price_max,
       markup_ratio, rating, active
FROM pricing_rules WHERE active ORDER BY priority, id

-- name: mark_record_errors
-- A stone whose latest record cannot be mapped keeps its last good data, marked with why and since when.
UPDATE diamonds d
SET record_error = t.message, record_error_at = coalesce(d.record_error_at, now())
FROM unnest(%(stone_ids)s::text[], %(messages)s::text[]) AS t(stone_id, message)
WHERE d.feed = %(feed)s AND d.supplier_stone_id = t.stone_id AND d.status = 'active'
