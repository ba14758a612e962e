-- Consolidation skips stones it would rebuild identically. A diamonds row records what it was built from: the raw
-- payload's hash, the mapping's version (MAPPING_VERSION in opus/domain/mapping.py) and the pricing rules' version.
-- A raw row whose three inputs match its diamond's is released without being mapped; anything else is rebuilt.

-- The rules' version: bumped by every statement that changes pricing_rules, whoever runs it (the API, an operator in
-- psql, a migration). A statement trigger, so that a bulk change costs one bump, not one per rule. A sequence rather
-- than a counter row: it never goes back (TRUNCATE ... RESTART IDENTITY leaves it alone, it is owned by no table),
-- and bumping it takes no row lock, so concurrent rule changes do not queue on it. A bump by a transaction that then
-- rolls back only costs one needless rebuild. Readers hold `LOCK pricing_rules IN SHARE MODE`: no rule change is in
-- flight then, so the version read matches the rules read.
CREATE SEQUENCE pricing_rules_version;
SELECT setval('pricing_rules_version', 1);

CREATE FUNCTION bump_pricing_rules_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('pricing_rules_version');
    RETURN NULL;
END
$$;

CREATE TRIGGER pricing_rules_version_bump
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pricing_rules
    FOR EACH STATEMENT EXECUTE FUNCTION bump_pricing_rules_version();

-- NULL on rows built before this migration: they match nothing, so the next full run rebuilds them once.
ALTER TABLE diamonds
    ADD COLUMN payload_hash    text,
    ADD COLUMN mapping_version integer,
    ADD COLUMN rules_version   bigint;
