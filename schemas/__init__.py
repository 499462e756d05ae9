"""Pydantic models that are Gatekeeper's wire contract: socket events, commands, HTTP bodies."""
