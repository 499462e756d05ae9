-- Credit packs bought through Stripe Checkout or LemonSqueezy, their refunds, and receivables.

-- The other side of every purchase, refund and receivable settlement.
INSERT INTO accounts (account_id, kind) VALUES ('system:purchases', 'system') ON CONFLICT DO NOTHING;

-- One row per paid pack. purchase_ref is the ledger reference of its grant (kind 'purchase'):
-- the Stripe Checkout Session id, or 'lemonsqueezy:<order id>'.
CREATE TABLE purchases (
    purchase_ref     text PRIMARY KEY,
    provider         text NOT NULL CHECK (provider IN ('stripe', 'lemonsqueezy')),
    payment_ref      text NOT NULL UNIQUE,  -- what a refund names: Stripe payment_intent, LS order
    user_id          text NOT NULL,
    pack             text NOT NULL,
    credits          bigint NOT NULL CHECK (credits > 0),
    amount           bigint NOT NULL CHECK (amount >= 0),  -- paid, in minor units
    currency         text NOT NULL,
    amount_refunded  bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    credits_reversed bigint NOT NULL DEFAULT 0 CHECK (credits_reversed >= 0 AND credits_reversed <= credits),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchases_user ON purchases (user_id, created_at);

-- A refund that arrived before its purchase (webhooks are not ordered): applied when it lands.
CREATE TABLE early_refunds (
    payment_ref     text PRIMARY KEY,
    provider        text NOT NULL,
    amount_refunded bigint NOT NULL CHECK (amount_refunded > 0),
    amount          bigint NOT NULL CHECK (amount >= 0),
    received_at     timestamptz NOT NULL DEFAULT now()
);

-- Credits a refund could not take back because they were already spent. The user may not spend
-- until every receivable is settled; credits that arrive later settle it first (ledger kind
-- 'receivable', reference '<receivable_id>:<settled so far>').
CREATE TABLE receivables (
    receivable_id bigserial PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (account_id),
    purchase_ref  text NOT NULL REFERENCES purchases (purchase_ref),
    reversal      bigint NOT NULL,  -- the purchase's credits_reversed this shortfall belongs to
    amount        bigint NOT NULL CHECK (amount > 0),
    settled       bigint NOT NULL DEFAULT 0 CHECK (settled >= 0 AND settled <= amount),
    created_at    timestamptz NOT NULL DEFAULT now(),
    settled_at    timestamptz,
    UNIQUE (purchase_ref, reversal)
);
CREATE INDEX receivables_open ON receivables (account_id, receivable_id) WHERE settled < amount;
