"""What the schemas declare only for the type checker, held to what they do at run time."""

from __future__ import annotations

import importlib
import pkgutil

import schemas
from schemas.base import Command
from schemas.socket_events import NewMessage
from schemas.tips import TipInfo, TipMessage


def all_commands() -> list[type[Command]]:
    for module in pkgutil.iter_modules(schemas.__path__):
        importlib.import_module(f"schemas.{module.name}")
    found, todo = [], list(Command.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_command_declares_its_own_command_id():
    # Command types command_id for mypy only: a real field there would be serialized first in every command.
    assert "command_id" not in Command.model_fields
    commands = all_commands()
    assert len(commands) >= 10
    assert [c.__name__ for c in commands if "command_id" not in c.model_fields] == []


def message(**fields: object) -> dict[str, object]:
    return {
        "messageId": "m1",
        "roomId": "r1",
        "userId": "alice",
        "username": "Alice",
        "message": "hello",
        "words": 1,
        "timestamp": 1,
        **fields,
    }


def test_new_message_repeats_id_and_content_unless_given():
    built = NewMessage(**message())
    assert (built.id, built.content) == ("m1", "hello")
    assert list(built.model_dump())[:7] == ["messageId", "id", "roomId", "userId", "username", "message", "content"]
    legacy = NewMessage(**message(id="old", content="old text"))
    assert (legacy.id, legacy.content) == ("old", "old text")
    tip = TipMessage(**message(kind="tip", tip=TipInfo(toUserId="bob", credits=2)))
    assert (tip.id, tip.content) == ("m1", "hello")
