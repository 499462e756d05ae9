"""The in-process bounds behind the socket events: windows, typing gate, read-mark coalescer, caps."""

from __future__ import annotations

import asyncio

from domain.rate_limits import parse_rate_limits
from ingress.connection_caps import ConnectionCaps
from ingress.event_gates import Coalescer, TypingGate
from ingress.rate_limiter import LocalWindows


def test_local_windows_refuse_past_the_limit_and_say_when_to_retry():
    now = [100.0]
    windows = LocalWindows(parse_rate_limits("2/1s,3/1m"), clock=lambda: now[0])
    assert windows.hit("s").allowed and windows.hit("s").allowed
    refused = windows.hit("s")
    assert not refused.allowed and 0 < refused.retry_after_ms <= 1000
    now[0] += 1.001
    assert windows.hit("s").allowed  # the second window had room for one more
    refused = windows.hit("s")
    assert not refused.allowed and refused.retry_after_ms > 58_000  # the minute window is full
    assert windows.hit("other").allowed  # keys are independent
    windows.forget("s")
    assert windows.hit("s").allowed


async def test_typing_gate_sends_one_per_state_per_interval_and_never_sticks():
    sent: list[bool] = []

    async def send(key, typing, name):
        sent.append(typing)

    gate: TypingGate[str] = TypingGate(0.2, send)
    shown = [typing for typing in [True, False] * 50 if gate.offer("k", typing, "Bob")]
    assert shown == [True, False]  # a start, then the stop after it at once; the rest held or dropped
    await asyncio.sleep(0.3)
    assert sent == []  # the last word was a stop, already shown: nothing held back goes out
    assert [gate.offer("k", True), gate.offer("k", False)] == [True, True]
    assert gate.offer("k", True) is False  # a start less than an interval after the last start
    await asyncio.sleep(0.3)
    assert sent == [True]  # ... sent when the interval ended, the user still typing
    assert gate.offer("k", False) is True  # a stop after a shown start: at once
    await asyncio.sleep(0.5)
    assert len(gate) == 0  # quiet for an interval: forgotten


async def test_coalescer_stores_the_first_at_once_and_the_best_of_the_rest_later():
    flushed: list[tuple[str, int]] = []

    async def flush(key, value):
        flushed.append((key, value))

    gate: Coalescer[str, int] = Coalescer(0.2, flush, max)
    assert gate.offer("k", 1) is True
    assert [gate.offer("k", v) for v in (5, 3, 4)] == [False, False, False]
    assert gate.offer("j", 9) is True
    await asyncio.sleep(0.3)
    assert flushed == [("k", 5)]
    await asyncio.sleep(0.3)
    assert len(gate) == 0
    assert gate.offer("k", 2) is True
    gate.release("k")  # it could not be stored: the key is free at once
    assert gate.offer("k", 2) is True


async def test_coalescer_flushes_what_it_holds_when_the_node_stops():
    flushed: list[tuple[str, int]] = []

    async def flush(key, value):
        flushed.append((key, value))

    gate: Coalescer[str, int] = Coalescer(60, flush, max)
    assert gate.offer("k", 1) is True and gate.offer("k", 7) is False and gate.offer("j", 2) is True
    await gate.flush_all()
    assert flushed == [("k", 7)] and len(gate) == 0  # "j" held nothing beyond what was stored at once


def test_connection_caps_count_per_user_and_ip_and_release_once():
    caps = ConnectionCaps(per_user=2, per_ip=3)
    assert caps.admit("a", "u1", "ip") is None and caps.admit("b", "u1", "ip") is None
    assert caps.admit("c", "u1", "ip").scope == "user"
    assert caps.admit("d", "u2", "ip") is None
    assert caps.admit("e", "u3", "ip").scope == "ip"
    assert caps.release("a") == "u1" and caps.release("a") is None
    assert caps.held(user_id="u1") == 1 and caps.held(ip="ip") == 2
    assert caps.admit("e", "u3", "ip") is None
