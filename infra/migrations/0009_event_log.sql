-- The event log: every command a worker has processed, as delivered, with what became of it.
-- The operator's view (and the source of `python -m scripts.replay`); the idempotency inbox stays
-- the mechanism. Written by workers/event_log.py after each delivery, outside the effect's
-- transaction: a row says what the last delivery reported, the inbox says what was applied.

CREATE TABLE event_log (
    command_id    text PRIMARY KEY,
    queue_name    text NOT NULL,
    actor_name    text NOT NULL,
    command_type  text NOT NULL,
    user_id       text,
    tenant_id     text,
    payload       jsonb NOT NULL,  -- the command exactly as delivered: what a replay re-enqueues
    -- applied/rejected: a delivery committed its effect (or its refusal); failed: it gave up after
    -- its retries (a later delivery may still apply it); duplicate: no delivery logged here applied
    -- it, one found it already done. A duplicate never overwrites applied/rejected; a failure
    -- overwrites nothing (see infra/event_log.py).
    status        text NOT NULL CHECK (status IN ('applied', 'rejected', 'failed', 'duplicate')),
    last_status   text NOT NULL CHECK (last_status IN ('applied', 'rejected', 'failed', 'duplicate')),  -- the latest delivery's
    deliveries    integer NOT NULL DEFAULT 1 CHECK (deliveries >= 0),  -- that reached an outcome (not a pending retry)
    duplicates    integer NOT NULL DEFAULT 0 CHECK (duplicates >= 0),  -- no-op deliveries
    last_error    text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_first_seen ON event_log (first_seen_at, command_id);
CREATE INDEX event_log_type ON event_log (command_type, first_seen_at);
CREATE INDEX event_log_user ON event_log (user_id, first_seen_at) WHERE user_id IS NOT NULL;
CREATE INDEX event_log_tenant ON event_log (tenant_id, first_seen_at) WHERE tenant_id IS NOT NULL;
CREATE INDEX event_log_status ON event_log (status, first_seen_at);
