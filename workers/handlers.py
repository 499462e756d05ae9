"""How a worker module says which commands it handles.

A handler takes the process's :class:`Resources` and the validated command, and returns the
command's :class:`Outcome`; it never publishes, logs the command's end or returns an event-log
status itself: the actor built around it (:mod:`workers.actors`) does that for every command::

    handlers = Handlers()

    @handlers.on(SEND_MESSAGE_ACTOR)
    async def send_message(res: Resources, cmd: SendChatMessage) -> Outcome: ...

A handler may also declare ``on_give_up``: what to undo or record when the workers give up on a
command, besides telling its sender (the registry's failure notice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.effects import Outcome
from workers.resources import Resources

Handle = Callable[[Resources, Any], Awaitable[Outcome]]
GiveUp = Callable[[Resources, Any, BaseException], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handler:
    actor: str
    handle: Handle
    on_give_up: GiveUp | None = None


class Handlers:
    """The handlers of one worker module, by actor name."""

    def __init__(self) -> None:
        self._by_actor: dict[str, Handler] = {}

    def on(self, actor: str, *, on_give_up: GiveUp | None = None) -> Callable[[Handle], Handle]:
        def register(handle: Handle) -> Handle:
            if actor in self._by_actor:
                raise ValueError(f"{actor} has two handlers")
            self._by_actor[actor] = Handler(actor, handle, on_give_up)
            return handle

        return register

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._by_actor.values())
