-- Tenants (businesses), their channels, conversations with contacts, outbound delivery state.

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('user', 'tenant', 'system'));

CREATE TABLE tenants (
    tenant_id     text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name          text NOT NULL,
    system_prompt text NOT NULL DEFAULT '',
    auto_reply    boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- How inbound traffic finds its tenant: the destination number or account id, per channel.
CREATE TABLE tenant_channels (
    channel    text NOT NULL CHECK (channel IN ('twilio_whatsapp', 'twilio_sms', 'meta_whatsapp', 'instagram')),
    address    text NOT NULL,
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address)
);
CREATE INDEX tenant_channels_tenant ON tenant_channels (tenant_id);

CREATE TABLE conversations (
    conversation_id uuid PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    channel         text NOT NULL,
    address         text NOT NULL,   -- our side: the tenant's number or account id
    contact         text NOT NULL,   -- their side: phone number or Instagram-scoped id
    contact_name    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel, contact)
);
CREATE INDEX conversations_tenant_recent ON conversations (tenant_id, last_message_at DESC);

-- One row per message we send to a contact; the provider id makes a resend detectable.
CREATE TABLE outbound_messages (
    message_id          uuid PRIMARY KEY,
    conversation_id     uuid NOT NULL REFERENCES conversations (conversation_id),
    tenant_id           text NOT NULL,
    channel             text NOT NULL,
    address             text NOT NULL,
    contact             text NOT NULL,
    body                text NOT NULL,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
    provider_message_id text UNIQUE,
    error_code          text,
    error_message       text,
    attempts            integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_messages_conversation ON outbound_messages (conversation_id, created_at);
