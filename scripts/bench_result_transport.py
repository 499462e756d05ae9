"""``python -m scripts.bench_result_transport``: the two ways results could travel from the workers
to the ingress nodes through Redis, measured side by side on a Redis server of its own.

- ``pubsub``: what Gatekeeper does. A worker PUBLISHes each batch of results to one channel that
  every node subscribes to; a node whose subscription broke misses what was published meanwhile
  and reads it back from PostgreSQL by each room's ``seq`` (ingress/room_sequencer.py).
- ``stream``: the alternative. A worker XADDs each batch to one stream (trimmed with ``MAXLEN ~``)
  and every node reads it with ``XREAD BLOCK`` from the last id it saw, so a reconnecting node
  resumes where it stopped.

For each, ``--publishers`` concurrent publishers send ``--messages`` result batches of about
``--payload`` bytes (the size of a batch's emits) while ``--nodes`` readers receive them. It
prints the publish rate, the delivery latency (publish to receipt, p50/p99, over every node), the
Redis server's CPU time per batch (from its ``INFO cpu``), and how many batches one node missed
when its connection was killed (``CLIENT KILL``) while they were published; it reconnects at once.

    python -m scripts.bench_result_transport --rounds 3

It starts and stops its own ``redis-server`` (by pid), so nothing else on the box shares it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio

from scripts.chaos_stack import free_port

CHANNEL = "bench:results"
STREAM = "bench:results:stream"
STREAM_MAXLEN = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_result_transport", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="result batches per transport and round")
    p.add_argument("--payload", type=int, default=1_500, help="bytes per batch")
    p.add_argument("--nodes", type=int, default=2, help="ingress nodes reading")
    p.add_argument("--publishers", type=int, default=4, help="concurrent publishers (worker threads)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of both transports")
    return p.parse_args(argv)


@dataclass
class Result:
    transport: str
    publish_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    redis_cpu_s: float = 0.0
    missed_in_gap: int = 0
    received: int = 0

    def line(self, messages: int) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat) if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else float("nan")
        return (
            f"{self.transport:<7} published {messages / self.publish_s:>8.0f}/s | latency p50 {p50:6.2f} ms"
            f" p99 {p99:7.2f} ms | Redis CPU {self.redis_cpu_s * 1e6 / messages:6.1f} µs/batch"
            f" | received {self.received} | missed by the cut node {self.missed_in_gap}"
        )


async def redis_cpu(client: redis.asyncio.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def body(n: int, size: int) -> bytes:
    head = json.dumps({"n": n, "t": time.perf_counter()})
    return (head + " " * max(0, size - len(head))).encode()


def stamp(raw: bytes) -> tuple[int, float]:
    head = json.loads(raw.decode().rstrip())
    return head["n"], head["t"]


async def publish_all(client: redis.asyncio.Redis, transport: str, args: argparse.Namespace) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.messages):
        queue.put_nowait(n)

    async def publisher() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if transport == "pubsub":
                await client.publish(CHANNEL, body(n, args.payload))
            else:
                await client.xadd(STREAM, {"d": body(n, args.payload)}, maxlen=STREAM_MAXLEN, approximate=True)

    await asyncio.gather(*(publisher() for _ in range(args.publishers)))


async def read_pubsub(
    url: str, name: str, seen: dict[int, float], latencies: list[float], ready: asyncio.Event
) -> None:
    client = redis.asyncio.Redis.from_url(url, client_name=name)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    ready.set()
    try:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (redis.ConnectionError, OSError):
                await asyncio.sleep(0.01)  # what a node does: resubscribe at once
                try:
                    await pubsub.subscribe(CHANNEL)
                except (redis.ConnectionError, OSError):
                    pass
                continue
            if message is None:
                continue
            n, t = stamp(message["data"])
            seen[n] = time.perf_counter()
            latencies.append((seen[n] - t) * 1000)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def read_stream(
    url: str, name: str, seen: dict[int, float], latencies: list[float], ready: asyncio.Event
) -> None:
    client = redis.asyncio.Redis.from_url(url, client_name=name)
    last_id = "$"
    ready.set()
    try:
        while True:
            try:
                # RESP2 (the client's protocol) answers [[stream, [(id, fields), ...]], ...]
                found = cast("list[list[Any]]", await client.xread({STREAM: last_id}, count=512, block=1000))
            except (redis.ConnectionError, OSError):
                await asyncio.sleep(0.01)
                continue
            for _, entries in found:
                for entry_id, fields in entries:
                    last_id = entry_id
                    n, t = stamp(fields[b"d"])
                    seen[n] = time.perf_counter()
                    latencies.append((seen[n] - t) * 1000)
    finally:
        await client.aclose()


async def one_round(url: str, transport: str, args: argparse.Namespace) -> Result:
    admin = redis.asyncio.Redis.from_url(url)
    await admin.delete(STREAM)
    result = Result(transport)
    seen: list[dict[int, float]] = [{} for _ in range(args.nodes)]
    read = read_pubsub if transport == "pubsub" else read_stream
    readies = [asyncio.Event() for _ in range(args.nodes)]
    readers = [
        asyncio.create_task(read(url, f"node-{i}", seen[i], result.latencies_ms, readies[i])) for i in range(args.nodes)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(0.3)
    publisher = redis.asyncio.Redis.from_url(url)
    cpu0, t0 = await redis_cpu(admin), time.perf_counter()
    publishing = asyncio.create_task(publish_all(publisher, transport, args))
    await asyncio.sleep(0.2)
    # Cut node 0's connection, as a network blip or a CLIENT KILL would; it reconnects at once.
    for client in await admin.client_list():
        if client.get("name") == "node-0":
            await admin.client_kill_filter(_id=client["id"])
    await asyncio.wait_for(publishing, 120)
    result.publish_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)  # the last deliveries (a few ms behind the publishes)
    result.redis_cpu_s = await redis_cpu(admin) - cpu0
    for task in readers:
        task.cancel()
    await asyncio.wait(readers, timeout=5)  # a reader cancelled inside a blocking XREAD may not end cleanly
    result.received = sum(len(s) for s in seen)
    result.missed_in_gap = args.messages - min(len(s) for s in seen)  # the node that was cut
    await publisher.aclose()
    await admin.aclose()
    return result


def start_redis(port: int) -> subprocess.Popen:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


async def main_async(args: argparse.Namespace) -> int:
    port = free_port()
    server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        probe = redis.asyncio.Redis.from_url(url)
        for _ in range(100):
            try:
                await probe.ping()
                break
            except (redis.ConnectionError, OSError):
                await asyncio.sleep(0.05)
        await probe.aclose()
        print(
            f"{args.messages} batches of {args.payload} bytes, {args.publishers} publishers, {args.nodes} nodes,"
            " node 0's connection killed once while they are published",
            flush=True,
        )
        for _ in range(args.rounds):
            for transport in ("pubsub", "stream"):
                print((await one_round(url, transport, args)).line(args.messages), flush=True)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
