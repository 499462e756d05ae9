"""A room with a sender and a watcher on different nodes, and how often each message reached a client."""

from __future__ import annotations

from tests.support.admin_api import grant
from tests.support.clients import ChatClient
from tests.support.ids import uid


async def room_of_two(http, stack, clients, credits: int = 5) -> tuple[str, ChatClient, ChatClient]:
    """A sender on the first node and a watcher on the second, both in a new room."""
    sender, watcher = ChatClient(uid("sender")), ChatClient(uid("watcher"))
    clients += [sender, watcher]
    room = uid("room")
    await grant(http, stack, sender.user_id, credits, "g1")
    await sender.connect(stack.ports[0])
    await watcher.connect(stack.ports[1])
    await sender.join(room)
    await watcher.join(room)
    return room, sender, watcher


def counts(client: ChatClient) -> dict[str, int]:
    """How many times ``client`` received each message id."""
    found: dict[str, int] = {}
    for m in client.events["newMessage"]:
        found[m["messageId"]] = found.get(m["messageId"], 0) + 1
    return found
