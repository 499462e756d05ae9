"""Dramatiq workers: one queue per capability, each command applied idempotently."""
