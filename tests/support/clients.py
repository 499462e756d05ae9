"""A recording Socket.IO client for tests (python-socketio speaks the same protocol as socket.io-client)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import jwt
import socketio

from tests.support.isolation import JWT_SECRET
from tests.support.stacks import Stack

EVENTS = (
    "roomJoined",
    "roomLeft",
    "userJoined",
    "userLeft",
    "newMessage",
    "creditError",
    "creditWarning",
    "userTyping",
    "messageRead",
    "error",
    "conversationUpdated",
    "messageStatus",
    "messageDelta",
    "agentError",
    "tipReceived",
    "tipSent",
    "quotaExceeded",
    "planUpdated",
    "creditsPurchased",
    "creditsRefunded",
    "incoming-call",
    "accept-call",
    "reject-call",
    "end-call",
    "call-unavailable",
    "signal",
    "callStarted",
    "callEnded",
    "serverShutdown",
)


def make_token(user_id: str, name: str | None = None, role: str | None = None, ttl_s: int = 3600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": user_id, "name": name or user_id, "exp": int(time.time()) + ttl_s, **claims}
    if role:
        payload["role"] = role
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


class ChatClient:
    def __init__(self, user_id: str, name: str | None = None, *, reconnection: bool = False) -> None:
        self.user_id = user_id
        self.name = name or user_id
        self.sio = socketio.AsyncClient(reconnection=reconnection)
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._changed = asyncio.Event()
        for event in EVENTS:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Callable[[Any], Any]:
        async def record(data: Any = None) -> None:
            self.events[event].append(data)
            self._changed.set()

        return record

    async def connect(self, port: int, token: str | None = None, transports: list[str] | None = None) -> ChatClient:
        await self.sio.connect(
            f"http://127.0.0.1:{port}",
            auth={"token": token or make_token(self.user_id, self.name)},
            transports=transports or ["websocket"],
            wait_timeout=10,
        )
        return self

    async def join(self, room_id: str, **extra: Any) -> dict:
        await self.sio.emit("joinRoom", {"roomId": room_id, **extra})
        return await self.wait_for("roomJoined", lambda d: d["roomId"] == room_id)

    async def send(self, room_id: str, message: str, **extra: Any) -> dict:
        return await self.sio.call("sendMessage", {"roomId": room_id, "message": message, **extra}, timeout=10)

    async def wait_for(self, event: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 15) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.events[event]:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(
        self, event: str, count: int, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 30
    ) -> list[Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = [d for d in self.events[event] if predicate(d)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.sio.disconnect()


async def connected(clients: list[ChatClient], stack: Stack, user: str, node: int = 0) -> ChatClient:
    """A client of ``user`` connected to one of the stack's nodes, added to the test's ``clients``."""
    client = ChatClient(user, user.title())
    clients.append(client)
    await client.connect(stack.ports[node])
    return client


async def send_tip(client: ChatClient, **payload) -> dict:
    return await client.sio.call("sendTip", payload, timeout=10)
