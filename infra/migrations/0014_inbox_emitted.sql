-- When a command's socket emits were published: a redelivered, retried or replayed command re-publishes
-- its stored emits only while this is unset, so a client that does not dedupe never gets a
-- message twice. Rows of commands finished before this migration count as published: the constant
-- default is set without rewriting the table, and dropped so that new rows start unpublished.
ALTER TABLE inbox ADD COLUMN emitted_at timestamptz DEFAULT '2026-12-07T00:00:00Z';
ALTER TABLE inbox ALTER COLUMN emitted_at DROP DEFAULT;
