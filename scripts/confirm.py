"""The operator's confirmation before a destructive command (``scripts.dlq purge``, ``scripts.event_log prune``)."""

from __future__ import annotations

import sys
from collections.abc import Collection


def confirm(prompt: str, answers: Collection[str] = ("yes",)) -> bool:
    """Ask on stderr and read one line from stdin; True only for one of ``answers`` (EOF is a no)."""
    print(prompt, end="", flush=True, file=sys.stderr)
    return sys.stdin.readline().strip() in answers
