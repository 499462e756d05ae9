"""Unique ids for users, rooms and keys, so tests sharing a database never collide."""

from __future__ import annotations

import uuid


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
