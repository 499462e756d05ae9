"""What every operator command shares: loading the settings, and confirming a destructive step."""

from __future__ import annotations

import sys
from collections.abc import Collection

import pydantic

from infra.settings import Settings


def load_settings() -> Settings:
    """The settings from the environment (and ``.env``); exit 2 with the reason when they are invalid."""
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        print(f"error: settings (environment or .env): {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def confirm(prompt: str, answers: Collection[str] = ("yes",)) -> bool:
    """Ask on stderr and read one line from stdin; True only for one of ``answers`` (EOF is a no)."""
    print(prompt, end="", flush=True, file=sys.stderr)
    return sys.stdin.readline().strip() in answers
