"""A chat pool spreads its partitions' active consumers over its processes (workers/pool_slot.py).

RabbitMQ makes a single-active-consumer queue's first consumer the active one. Process ``i`` of a
pool registers at once on the partitions it leads and later, as the standby, on the others, so
each process is the active consumer of its share. Read from RabbitMQ's management API: which
consumer is active, on which connection, and the process that named the connection.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from schemas.queues import CHAT_PARTITION_QUEUES
from tests.support import isolation
from tests.support.processes import Processes

MANAGEMENT = "http://127.0.0.1:15672"
DEADLINE_S = 60


def management(path: str) -> dict:
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(f"{MANAGEMENT}{path}", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def active_pid(vhost: str, queue: str) -> int | None:
    """The pid of the process whose consumer is ``queue``'s active one, once both processes consume it."""
    details = management(f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}").get("consumer_details") or []
    active = [d for d in details if d.get("active")]
    if len(details) != 2 or len(active) != 1:
        return None
    channel = active[0].get("channel_details")
    if not isinstance(channel, dict) or "connection_name" not in channel:  # the API can list it empty a moment
        return None
    connection = management(f"/api/connections/{quote(channel['connection_name'], safe='')}")
    named = re.fullmatch(r"gatekeeper-workers pid=(\d+)", connection["client_properties"].get("connection_name", ""))
    return int(named.group(1)) if named else None


@pytest.fixture
def pool_vhost(stack_env) -> Iterator[tuple[Processes, str]]:
    vhost = f"{stack_env['KEY_PREFIX']}_spread"
    isolation.create_vhost(vhost)
    procs = Processes({**stack_env, "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}"})
    try:
        yield procs, vhost
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


def test_each_process_of_a_pool_is_the_active_consumer_of_its_share_of_the_partitions(pool_vhost):
    procs, vhost = pool_vhost
    pool = procs.workers("chat", processes=2, threads=2)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        actives = {queue: active_pid(vhost, queue) for queue in CHAT_PARTITION_QUEUES}
        if all(actives.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(actives.values()), actives
    assert pool.pid not in actives.values()  # the worker processes consume, not dramatiq's parent
    assert sorted(Counter(actives.values()).values()) == [2, 2], actives  # two partitions each
    # Process i leads the partitions k with k % 2 == i: p0 and p2 on one process, p1 and p3 on the other.
    assert actives["chat.p0"] == actives["chat.p2"] and actives["chat.p1"] == actives["chat.p3"]
