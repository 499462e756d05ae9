"""Operator tools: migrations, dev tokens, the local runner and the load test."""
