-- Double-entry credit ledger, idempotency inbox and chat history.

CREATE TABLE accounts (
    account_id            text PRIMARY KEY,
    kind                  text NOT NULL CHECK (kind IN ('user', 'system')),
    credits               bigint NOT NULL DEFAULT 0,
    words_left            integer NOT NULL DEFAULT 0 CHECK (words_left >= 0),
    words_expire_at       timestamptz,
    low_balance_warned    boolean NOT NULL DEFAULT false,
    words_used_total      bigint NOT NULL DEFAULT 0 CHECK (words_used_total >= 0),
    credits_charged_total bigint NOT NULL DEFAULT 0 CHECK (credits_charged_total >= 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- Last line of defence: a user's balance is never negative. System accounts
    -- (revenue, grants) are the other side of every movement and may go negative.
    CONSTRAINT user_balance_not_negative CHECK (kind = 'system' OR credits >= 0)
);

INSERT INTO accounts (account_id, kind) VALUES
    ('system:revenue', 'system'),
    ('system:grants', 'system');

-- One row per movement; (kind, reference) makes each movement happen once.
CREATE TABLE ledger_transactions (
    txn_id     bigserial PRIMARY KEY,
    kind       text NOT NULL,
    reference  text NOT NULL,
    memo       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, reference)
);

-- Two or more postings per transaction, summing to zero.
CREATE TABLE ledger_postings (
    posting_id bigserial PRIMARY KEY,
    txn_id     bigint NOT NULL REFERENCES ledger_transactions (txn_id),
    account_id text NOT NULL REFERENCES accounts (account_id),
    amount     bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id, txn_id);
CREATE INDEX ledger_postings_txn ON ledger_postings (txn_id);

-- The idempotency inbox and event log: one row per command ever applied.
CREATE TABLE inbox (
    command_id  text PRIMARY KEY,
    kind        text NOT NULL,
    user_id     text,
    status      text NOT NULL CHECK (status IN ('applied', 'rejected', 'failed')),
    result      jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts    integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_created ON inbox (created_at);

CREATE TABLE messages (
    seq        bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    room_id    text NOT NULL,
    user_id    text NOT NULL,
    words      integer NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_room_seq ON messages (room_id, seq DESC);

CREATE TABLE read_marks (
    room_id    text NOT NULL,
    user_id    text NOT NULL,
    message_id uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
