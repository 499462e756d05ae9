-- Plans (Stripe subscriptions), daily quotas and the metering of AI tokens to Stripe.

-- The account that funds each paid invoice's monthly credit allowance.
INSERT INTO accounts (account_id, kind) VALUES ('system:plans', 'system') ON CONFLICT DO NOTHING;

-- Each user's plan as the Stripe subscription events left it. No row = the Free plan.
-- state_at/state_rank order the events that wrote it (Stripe delivers out of order):
-- an event older than the stored state changes nothing.
CREATE TABLE user_plans (
    user_id                text PRIMARY KEY,
    plan                   text NOT NULL,
    status                 text NOT NULL,
    stripe_customer_id     text,
    stripe_subscription_id text,
    current_period_end     timestamptz,
    state_at               timestamptz NOT NULL,
    state_rank             smallint NOT NULL DEFAULT 0,
    state_event_id         text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_plans_customer ON user_plans (stripe_customer_id);
CREATE INDEX user_plans_subscription ON user_plans (stripe_subscription_id);

-- When a user's AI usage is billed to which Stripe customer: one window per stretch of an active
-- plan (opened when the plan becomes active, closed when it lapses). Calls inside a window are
-- reported as meter events, even after it closed; calls outside any window never are.
CREATE TABLE meter_windows (
    window_id   bigserial PRIMARY KEY,
    user_id     text NOT NULL,
    customer_id text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    CHECK (ends_at IS NULL OR ends_at >= starts_at)
);
CREATE UNIQUE INDEX meter_windows_open ON meter_windows (user_id) WHERE ends_at IS NULL;
CREATE INDEX meter_windows_user ON meter_windows (user_id, starts_at);

-- Messages applied per user and UTC day, for the plans' daily message quotas.
CREATE TABLE daily_usage (
    user_id  text NOT NULL,
    day      date NOT NULL,
    messages integer NOT NULL DEFAULT 0 CHECK (messages >= 0),
    PRIMARY KEY (user_id, day)
);

-- When Stripe accepted a model call's tokens as a meter event (identifier = call_id).
ALTER TABLE ai_usage ADD COLUMN meter_reported_at timestamptz;
CREATE INDEX ai_usage_unreported ON ai_usage (created_at) WHERE meter_reported_at IS NULL AND status = 'ok';
