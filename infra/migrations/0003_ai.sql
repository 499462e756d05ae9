-- The AI agent: token usage per model call, and each conversation's latest classification.

CREATE TABLE ai_usage (
    call_id           uuid PRIMARY KEY,
    command_id        text NOT NULL,
    purpose           text NOT NULL CHECK (purpose IN ('reply', 'auto_reply', 'classify')),
    asker             text NOT NULL,   -- the account that asked: user:<id> or tenant:<id>
    tenant_id         text,
    model             text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    latency_ms        integer NOT NULL,
    status            text NOT NULL CHECK (status IN ('ok', 'error')),
    error_code        text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_usage_tenant_created ON ai_usage (tenant_id, created_at);
CREATE INDEX ai_usage_asker_created ON ai_usage (asker, created_at);

ALTER TABLE conversations
    ADD COLUMN intent        text,
    ADD COLUMN confidence    real CHECK (confidence BETWEEN 0 AND 1),
    ADD COLUMN lead          text CHECK (lead IN ('hot', 'warm', 'cold')),
    ADD COLUMN summary       text,
    ADD COLUMN classified_at timestamptz;

CREATE INDEX messages_created ON messages (created_at);
