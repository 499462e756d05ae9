"""A client catches up on its own (issue 15, point 3): ``joinRoom {roomId, sinceSeq}`` returns every
message after ``sinceSeq`` (its first page, then ``hasMore``), ``roomJoined`` carries the room's
``lastSeq``, and ``GET /api/rooms/{roomId}/messages`` pages a room's history by seq for whoever may
join the room."""

from __future__ import annotations

import asyncio

from tests.support.admin_api import grant
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid

PAGE_MAX = 200  # HISTORY_PAGE_MAX's default, as the stack runs


async def fill_room(http, stack, clients, count: int, senders: int = 1) -> tuple[str, list[ChatClient]]:
    """``count`` messages in a new room, sent by ``senders`` users at once; numbered by seq 1..count."""
    room = uid("room")
    people = [ChatClient(uid(f"s{i}")) for i in range(senders)]
    clients += people
    for person in people:
        await grant(http, stack, person.user_id, 5, "g1")
        await person.connect(stack.ports[0])
        await person.join(room)
    each = [count // senders + (1 if i < count % senders else 0) for i in range(senders)]
    acks = await asyncio.gather(
        *(p.send(room, f"mensaje {p.user_id} {n}") for p, k in zip(people, each, strict=True) for n in range(k))
    )
    assert [a["status"] for a in acks] == ["accepted"] * count
    await people[0].wait_count("newMessage", count)
    return room, people


async def messages(http, stack, room: str, user_id: str, **query) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {make_token(user_id)}"}
    params = {k: str(v) for k, v in query.items()}
    async with http.get(stack.url(f"/api/rooms/{room}/messages"), params=params, headers=headers) as resp:
        return resp.status, await resp.json()


def seqs(payloads: list[dict]) -> list[int]:
    return [m["seq"] for m in payloads]


async def test_join_since_seq_returns_everything_after_it_and_the_rooms_last_seq(stack, http, clients):
    room, _ = await fill_room(http, stack, clients, 7)
    late = ChatClient(uid("late"))
    clients.append(late)
    await late.connect(stack.ports[1])
    joined = await late.join(room, sinceSeq=3)
    assert seqs(joined["history"]) == [4, 5, 6, 7] and joined["lastSeq"] == 7 and joined["hasMore"] is False

    fresh = ChatClient(uid("fresh"))
    clients.append(fresh)
    await fresh.connect(stack.ports[0])
    plain = await fresh.join(room)
    assert plain["lastSeq"] == 7 and seqs(plain["history"]) == list(range(1, 8))  # as before, plus lastSeq

    # Already in the room: a join with sinceSeq catches up without leaving it.
    late.events["roomJoined"].clear()
    again = await late.join(room, sinceSeq=6)
    assert again["alreadyJoined"] is True and seqs(again["history"]) == [7] and again["lastSeq"] == 7


async def test_catching_up_on_more_than_a_page_goes_past_the_last_fifty(stack, http, clients):
    room, people = await fill_room(http, stack, clients, PAGE_MAX + 10, senders=3)
    back = ChatClient(uid("back"))
    clients.append(back)
    await back.connect(stack.ports[1])
    joined = await back.join(room, sinceSeq=0)
    assert seqs(joined["history"]) == list(range(1, PAGE_MAX + 1)) and joined["hasMore"] is True
    status, rest = await messages(http, stack, room, back.user_id, afterSeq=PAGE_MAX)
    assert status == 200, rest
    assert seqs(rest["messages"]) == list(range(PAGE_MAX + 1, PAGE_MAX + 11)) and rest["hasMore"] is False
    stored = {m["messageId"] for m in joined["history"] + rest["messages"]}
    assert stored == {m["messageId"] for m in people[0].events["newMessage"]}  # the very messages delivered


async def test_history_pages_forwards_and_backwards_by_seq(stack, http, clients):
    room, _ = await fill_room(http, stack, clients, 7)
    reader = uid("reader")  # may join the group room, so may read it, without being in it
    forwards, after = [], 0
    while True:
        status, page = await messages(http, stack, room, reader, afterSeq=after, limit=2)
        assert status == 200 and page["lastSeq"] == 7 and page["roomId"] == room
        forwards.append(seqs(page["messages"]))
        if not page["hasMore"]:
            break
        after = page["messages"][-1]["seq"]
    assert forwards == [[1, 2], [3, 4], [5, 6], [7]]
    assert (await messages(http, stack, room, reader, limit=3))[1]["messages"][0]["seq"] == 5  # the latest
    status, older = await messages(http, stack, room, reader, beforeSeq=5, limit=3)
    assert seqs(older["messages"]) == [2, 3, 4] and older["hasMore"] is True
    status, first = await messages(http, stack, room, reader, beforeSeq=2, limit=3)
    assert seqs(first["messages"]) == [1] and first["hasMore"] is False
    status, window = await messages(http, stack, room, reader, afterSeq=2, beforeSeq=6)
    assert seqs(window["messages"]) == [3, 4, 5]


async def test_room_history_is_refused_to_whoever_may_not_join_and_to_bad_queries(stack, http):
    alice, bob = uid("alice"), uid("bob")
    dm = f"dm:{min(alice, bob)}:{max(alice, bob)}"
    assert (await messages(http, stack, dm, alice))[0] == 200
    status, body = await messages(http, stack, dm, uid("eve"))
    assert status == 403 and body["error"]["code"] == "forbidden"
    async with http.get(stack.url(f"/api/rooms/{uid('room')}/messages")) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    for query in ({"limit": "0"}, {"limit": str(PAGE_MAX + 1)}, {"afterSeq": "-1"}, {"beforeSeq": "x"}):
        status, body = await messages(http, stack, uid("room"), alice, **query)
        assert status == 400 and body["error"]["code"] == "bad_request", query
    status, body = await messages(http, stack, "bad room!", alice)
    assert status == 400 and body["error"]["code"] == "invalid_room"
