-- Retention (`python -m scripts.event_log prune`) deletes by `last_seen_at`, in batches: without an
-- index every batch would scan the whole log. A plain CREATE INDEX (migrations run in a
-- transaction) makes writes to event_log wait while it builds; they come after each command's
-- commit, so commands are delayed, not failed.
CREATE INDEX event_log_last_seen ON event_log (last_seen_at);
