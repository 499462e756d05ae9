-- An operator taking over a conversation from the AI agent: while held, the agent does not
-- auto-reply to the contact, and the tenant's other operators see who holds it. Written only by
-- the channel_take_over actor (workers/takeover_service.py).

ALTER TABLE conversations
    ADD COLUMN taken_over_by   text,         -- the operator's user id; NULL: the AI agent may answer
    ADD COLUMN taken_over_name text,         -- their display name, for the other operators
    ADD COLUMN taken_over_at   timestamptz,
    ADD CONSTRAINT conversations_takeover_complete
        CHECK ((taken_over_by IS NULL) = (taken_over_at IS NULL));

-- The live inbox pages through a tenant's conversations newest first, ties broken by id
-- (GET /api/tenants/{tenantId}/conversations). It serves the analytics' range scans as well.
CREATE INDEX conversations_tenant_recent_id ON conversations (tenant_id, last_message_at DESC, conversation_id DESC);
DROP INDEX conversations_tenant_recent;
