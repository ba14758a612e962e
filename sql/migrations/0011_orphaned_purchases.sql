-- A purchase whose API process died between recording it 'pending' and storing the feed's answer stays pending:
-- the feed has no order-status query, so only an operator who checked Nivoda can settle it. Housekeeping alerts
-- once per such purchase (`alerted_at` says it did), and the operator's resolution is recorded with the
-- credential that made it (`resolved_by`; NULL for a purchase the feed's own answer settled).
ALTER TABLE purchase_history
    ADD COLUMN alerted_at  timestamptz,
    ADD COLUMN resolved_by text;

-- Housekeeping looks for old pending purchases on every pass; they are few, so a partial index keeps it cheap.
CREATE INDEX purchase_history_pending ON purchase_history (created_at) WHERE status = 'pending';

-- The order number sent to the feed as `customer_order_number` (the client's reference, else its
-- Idempotency-Key), recorded before the call: what an operator searches Nivoda's orders for.
ALTER TABLE purchase_history ADD COLUMN customer_order_number text;
UPDATE purchase_history
SET customer_order_number = COALESCE(reference, substr(idempotency_key, length(requested_by) + 2), idempotency_key);
