"""The per-socket room cursors of ingress/room_sequencer.py: each message once, in seq order, gaps
read back from the store (here, a list standing in for the messages table)."""

from __future__ import annotations

import pytest

from ingress.room_sequencer import RoomSequencer

ROOM = "lobby"
A, B = ("sa", "ea"), ("sb", "eb")


def msg(seq: int) -> dict:
    return {"roomId": ROOM, "seq": seq, "messageId": f"m{seq}"}


class Store:
    def __init__(self, last: int, fail: bool = False) -> None:
        self.messages = [msg(n) for n in range(1, last + 1)]
        self.fail = fail
        self.reads: list[tuple[int, int]] = []

    async def fetch(self, room_id: str, after: int, before: int, limit: int) -> list[dict]:
        self.reads.append((after, before))
        if self.fail:
            raise ConnectionError("database down")
        return [m for m in self.messages if m["seq"] > after and (not before or m["seq"] < before)][:limit]


class Sockets:
    def __init__(self) -> None:
        self.got: dict[str, list[int]] = {}

    async def send(self, message: dict, recipients: list[tuple[str, str]]) -> None:
        for sid, _ in recipients:
            self.got.setdefault(sid, []).append(message["seq"])


@pytest.fixture
def sockets() -> Sockets:
    return Sockets()


async def test_the_next_message_is_sent_and_a_repeated_one_is_not(sockets):
    sequencer = RoomSequencer(Store(0).fetch)
    sequencer.cursors.joined("sa", ROOM, 0)
    for seq in (1, 2, 2, 1, 3):
        await sequencer.deliver(ROOM, msg(seq), [A], sockets.send)
    assert sockets.got == {"sa": [1, 2, 3]} and sequencer.duplicates_dropped == 2


async def test_a_gap_is_read_back_in_order_only_for_the_sockets_that_miss_it(sockets):
    store = Store(6)
    sequencer = RoomSequencer(store.fetch)
    sequencer.cursors.joined("sa", ROOM, 2)
    sequencer.cursors.joined("sb", ROOM, 4)
    await sequencer.deliver(ROOM, msg(6), [A, B], sockets.send)
    assert store.reads == [(2, 6)]
    assert sockets.got == {"sa": [3, 4, 5, 6], "sb": [5, 6]}
    await sequencer.deliver(ROOM, msg(5), [A, B], sockets.send)  # the late copy of a read-back message
    assert sockets.got == {"sa": [3, 4, 5, 6], "sb": [5, 6]}


async def test_a_socket_that_joined_after_a_message_does_not_get_it_live(sockets):
    sequencer = RoomSequencer(Store(3).fetch)
    sequencer.cursors.joined("sa", ROOM, 3)  # its history went up to 3
    await sequencer.deliver(ROOM, msg(3), [A], sockets.send)
    await sequencer.deliver(ROOM, msg(4), [A], sockets.send)
    assert sockets.got == {"sa": [4]}


async def test_after_an_interrupted_subscription_each_room_is_read_back_from_its_lowest_cursor(sockets):
    store = Store(5)
    sequencer = RoomSequencer(store.fetch)
    sequencer.cursors.joined("sa", ROOM, 1)
    sequencer.cursors.joined("sb", ROOM, 3)
    await sequencer.resync(lambda room: [A, B] if room == ROOM else [], sockets.send)
    assert store.reads == [(1, 0)] and sockets.got == {"sa": [2, 3, 4, 5], "sb": [4, 5]}
    await sequencer.resync(lambda room: [A, B], sockets.send)  # nothing new: nothing sent again
    assert sockets.got == {"sa": [2, 3, 4, 5], "sb": [4, 5]}


async def test_when_the_store_is_out_of_reach_the_live_message_still_goes_out(sockets):
    sequencer = RoomSequencer(Store(5, fail=True).fetch)
    sequencer.cursors.joined("sa", ROOM, 1)
    await sequencer.deliver(ROOM, msg(5), [A], sockets.send)
    assert sockets.got == {"sa": [5]}


async def test_a_socket_that_left_is_forgotten(sockets):
    sequencer = RoomSequencer(Store(0).fetch)
    sequencer.cursors.joined("sa", ROOM, 7)
    sequencer.cursors.left("sa", ROOM)
    assert sequencer.cursors.get("sa", ROOM) is None and sequencer.cursors.rooms() == set()
    sequencer.cursors.joined("sb", ROOM, 2)
    sequencer.cursors.forget("sb")
    assert sequencer.cursors.rooms() == set()
