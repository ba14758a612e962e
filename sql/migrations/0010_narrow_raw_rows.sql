-- Raw rows are written twice per consolidation (claimed, then released), and the payload made each write copy
-- about 2 KB: compressed, it stayed inside the row. Moved out of line (compressed, in the TOAST table), a row
-- is ~150 bytes and an update copies a pointer instead. The claim changes no indexed column, so with room left
-- on each page it is a HOT update, with no index entries to add. Both apply to rows written from now on; a
-- row's payload is rewritten whenever the feed changes it.
ALTER TABLE raw_diamonds_nivoda SET (toast_tuple_target = 256, fillfactor = 70);
