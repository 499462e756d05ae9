-- Per-minute call billing (seed 003). One row per call; the minutes themselves are ledger
-- transfers: kind 'call' (caller -> callee) and kind 'call_fee' (caller -> system:revenue),
-- both with reference '<call_id>:<minute index>', so a minute is charged at most once.

CREATE TABLE calls (
    call_id          text PRIMARY KEY,
    caller_id        text NOT NULL,
    callee_id        text NOT NULL CHECK (callee_id <> caller_id),
    status           text NOT NULL CHECK (status IN ('active', 'ended')),
    -- The terms are fixed when the call starts: a settings change never reprices a call in progress.
    price_per_minute bigint NOT NULL CHECK (price_per_minute >= 0),
    fee_pct          integer NOT NULL CHECK (fee_pct BETWEEN 0 AND 100),
    minute_ms        bigint NOT NULL CHECK (minute_ms > 0),
    started_ms       bigint NOT NULL,
    last_seen_ms     bigint NOT NULL,  -- the latest start/heartbeat time; a lapsed call is billed to it
    ended_ms         bigint,
    end_reason       text,
    minutes_charged  integer NOT NULL DEFAULT 0 CHECK (minutes_charged >= 0),
    credits_charged  bigint NOT NULL DEFAULT 0 CHECK (credits_charged >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'ended') = (ended_ms IS NOT NULL))
);
CREATE INDEX calls_active_last_seen ON calls (last_seen_ms) WHERE status = 'active';
CREATE INDEX calls_caller ON calls (caller_id, created_at);
CREATE INDEX calls_callee ON calls (callee_id, created_at);
