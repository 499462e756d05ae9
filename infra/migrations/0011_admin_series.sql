-- The admin console's charts read the last hour of charges and AI usage by time
-- (infra/admin_series.py); messages already has messages_created.
CREATE INDEX ledger_transactions_created ON ledger_transactions (created_at);
CREATE INDEX ai_usage_created ON ai_usage (created_at);
