"""A process's JSON log lines, and those with given fields."""

from __future__ import annotations

import json
from typing import Any

from tests.support.processes import Proc

Line = dict[str, Any]


def json_lines(proc: Proc) -> list[Line]:
    lines = []
    for raw in proc.log().splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue  # a line still being written
    return lines


def having(lines: list[Line], **fields: Any) -> list[Line]:
    return [line for line in lines if all(line.get(key) == value for key, value in fields.items())]
