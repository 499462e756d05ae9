"""Node.js and the npm test clients under tests/js (``npm ci --prefix tests/js``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def node_or_fail() -> str:
    """The ``node`` executable; the test fails (never skips) when Node or the npm clients are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: install Node.js >= 18 to run the socket.io-client compatibility test")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"{JS_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/js` before pytest")
    return node
