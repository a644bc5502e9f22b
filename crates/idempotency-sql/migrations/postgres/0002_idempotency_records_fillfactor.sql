-- A record is inserted small (a reservation, ~150 bytes) and then completed in place
-- with its response (~1 KB more). Packed pages (fillfactor 100) leave no room for
-- the completed version beside the old one, so about half the completions were not
-- HOT updates and wrote new entries into both indexes. Leaving 80 % of each page
-- free at insert lets the completion of every record on a page stay on that page
-- (HOT: no index writes; the old version is pruned in place). A page ends up with
-- about as many completed records as before. Applies to pages written from now on.
ALTER TABLE idempotency_records SET (fillfactor = 20);
