"""Signed webhooks from providers: messaging channels and billing."""
