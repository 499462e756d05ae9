-- BEZ on chain: wallet links, the chain watcher's cursor, deposits and per-user fractions.

-- Single-use, expiring challenges a user signs (EIP-191) to prove they hold an address.
CREATE TABLE wallet_challenges (
    nonce      text PRIMARY KEY,
    user_id    text NOT NULL,
    message    text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wallet_challenges_user ON wallet_challenges (user_id, created_at DESC);

-- An address (lowercase 0x…) belongs to one user; a user may link several.
CREATE TABLE wallet_links (
    address   text PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
    user_id   text NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wallet_links_user ON wallet_links (user_id);

-- The watcher's durable cursor: the next block to read, per (chain id, token, treasury).
CREATE TABLE chain_cursors (
    chain_key  text PRIMARY KEY,
    next_block bigint NOT NULL CHECK (next_block >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every BEZ transfer to the treasury, once, whether or not its sender is linked yet.
CREATE TABLE chain_deposits (
    tx_hash      text NOT NULL,
    log_index    integer NOT NULL,
    chain_key    text NOT NULL,
    block_number bigint NOT NULL,
    from_address text NOT NULL,
    amount       numeric(78, 0) NOT NULL CHECK (amount >= 0),  -- token base units
    decimals     integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('credited', 'unclaimed')),
    user_id      text,
    credits      bigint NOT NULL DEFAULT 0,  -- whole credits this deposit completed
    created_at   timestamptz NOT NULL DEFAULT now(),
    credited_at  timestamptz,
    PRIMARY KEY (tx_hash, log_index),
    CHECK ((status = 'credited') = (user_id IS NOT NULL))
);
CREATE INDEX chain_deposits_unclaimed ON chain_deposits (from_address) WHERE status = 'unclaimed';

-- Token base units below one whole credit, carried per user until they add up to one.
CREATE TABLE chain_fractions (
    user_id    text PRIMARY KEY,
    base_units numeric(78, 0) NOT NULL DEFAULT 0 CHECK (base_units >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The other side of every deposit: credits that entered from the chain.
INSERT INTO accounts (account_id, kind) VALUES ('system:chain', 'system') ON CONFLICT DO NOTHING;
