-- What a run needs so that no crash, concurrent change or operator action loses, stalls or misprices stones:
-- a planner heartbeat, consolidation progress, attempts counted per partition, raw rows scoped by feed,
-- deletions confirmed with the feed, and a mark on stones whose latest record could not be used.

-- The planner owns a planning run while its heartbeat is fresh; a run whose planner is gone is failed by
-- housekeeping (or taken over by `opus run`) instead of blocking the feed until its deadline.
ALTER TABLE run_metadata
    ADD COLUMN planner                 text,
    ADD COLUMN heartbeat_at            timestamptz,
    -- The last time a consolidation slice of this run made progress; housekeeping revives a silent one.
    ADD COLUMN consolidation_active_at timestamptz,
    -- Deletion candidates a full run could not confirm with the feed: kept live, reported.
    ADD COLUMN unconfirmed             integer NOT NULL DEFAULT 0,
    -- How many of those candidates the run has asked the feed about so far (bounded by DELETE_CONFIRM_LIMIT).
    ADD COLUMN candidates_checked      integer NOT NULL DEFAULT 0;

-- Failed tries of the partition's current page. The transport's delivery count is not used: a scheduled retry
-- copy, a redelivery and a dead-letter policy would each count differently.
ALTER TABLE partition_progress
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text;

-- Raw rows belong to a feed: two feeds never share a row, a claim, a pending count or a deletion scope.
ALTER TABLE raw_diamonds_nivoda ADD COLUMN feed text NOT NULL DEFAULT 'nivoda';
ALTER TABLE raw_diamonds_nivoda ALTER COLUMN feed DROP DEFAULT;
ALTER TABLE raw_diamonds_nivoda DROP CONSTRAINT raw_diamonds_nivoda_supplier_stone_id_key;
ALTER TABLE raw_diamonds_nivoda ADD CONSTRAINT raw_diamonds_nivoda_feed_stone UNIQUE (feed, supplier_stone_id);
DROP INDEX raw_diamonds_nivoda_pending;
CREATE INDEX raw_diamonds_nivoda_pending ON raw_diamonds_nivoda (feed, id) WHERE pending;

-- A full run asks the feed about every active stone it did not see; only those the feed confirms are no longer
-- listed are soft-deleted. One row per stone confirmed gone in a run.
CREATE TABLE deletion_checks (
    run_id            uuid NOT NULL REFERENCES run_metadata (run_id) ON DELETE CASCADE,
    feed              text NOT NULL,
    supplier_stone_id text NOT NULL,
    checked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, supplier_stone_id)
);

-- A stone that was valid and later arrives malformed keeps its last good data, marked: the reason and since when.
ALTER TABLE diamonds
    ADD COLUMN record_error    text,
    ADD COLUMN record_error_at timestamptz;
CREATE INDEX diamonds_record_error ON diamonds (feed) WHERE record_error IS NOT NULL;
