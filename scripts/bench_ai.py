"""AI adapter benchmark: one ``ModelClient`` on one event loop against a fake model that answers in 1 s.

    .venv/bin/python -m scripts.bench_ai --calls 2000 --concurrency 256 --delay 1.0

Starts the fake OpenAI-compatible endpoint in this process (streaming replies, ``--delay`` before
the first chunk), then runs ``--calls`` ``stream_reply`` calls from ``--concurrency`` tasks sharing
ONE client, as a worker process's threads share its ``ModelClient``. Prints the most and the average
calls the endpoint saw in flight at once, replies/s, and latency p50/p95/p99. With a 1 s reply
time, N calls in flight give about N replies/s: the figure shows the adapter and its connection
pool do not serialize calls. (The worker-process side, ``--threads``, is dramatiq's.)

Run from the repository root: the fake endpoint lives in ``tests/support``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import statistics
import sys
import time

from pydantic import SecretStr

from infra.settings import Settings
from tests.support.fake_openai import FakeOpenAI
from workers.providers.model import ModelClient, ModelError


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    k = max(math.ceil(p / 100 * len(sorted_values)) - 1, 0)
    return sorted_values[k]


async def sample_in_flight(fake: FakeOpenAI, samples: list[int], every_s: float) -> None:
    while True:
        samples.append(fake.in_flight)
        await asyncio.sleep(every_s)


async def run(calls: int, concurrency: int, delay_s: float, timeout_s: float, words: int, chunks: int) -> int:
    api_key = "sk-bench-" + secrets.token_hex(8)
    reply = " ".join(f"palabra{i}" for i in range(words)) if words else None
    fake = FakeOpenAI(api_key=api_key, delay_s=delay_s, chunk_delay_s=0.005, chunks=chunks, reply_text=reply)
    await fake.start()
    settings = Settings(
        jwt_secret=SecretStr(secrets.token_hex(16)),
        admin_token=SecretStr(secrets.token_hex(16)),
        openai_base_url=fake.url,
        openai_api_key=SecretStr(api_key),
        ai_model="fake-model",
        ai_timeout_s=timeout_s,
        ai_max_attempts=1,  # a failure must show, not hide behind a retry
    )
    client = ModelClient(settings)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)

    async def on_delta(text: str) -> None:
        return None

    async def caller() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            messages = [{"role": "user", "content": f"pregunta número {i}: ¿cuánto cuesta el plan anual?"}]
            started = time.monotonic()
            try:
                await client.stream_reply(messages, on_delta)
            except ModelError as exc:
                failures[exc.code] = failures.get(exc.code, 0) + 1
            else:
                latencies.append(time.monotonic() - started)

    samples: list[int] = []
    sampler = asyncio.create_task(sample_in_flight(fake, samples, 0.05))
    started = time.monotonic()
    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        elapsed = time.monotonic() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await client.close()
        await fake.close()

    busy = [s for s in samples if s > 0]
    latencies.sort()
    print(
        f"calls {calls}, concurrency {concurrency}, reply delay {delay_s:.2f} s, streamed in {chunks} chunks"
        f"{f' ({words} words)' if words else ''}, one ModelClient"
    )
    print(f"  ok {len(latencies)}, failed {sum(failures.values())} {failures or ''}")
    print(f"  in flight at the fake: max {fake.max_in_flight}, average {statistics.fmean(busy) if busy else 0:.1f}")
    print(f"  total {elapsed:.2f} s, {len(latencies) / elapsed:.1f} replies/s")
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    worst = latencies[-1] if latencies else math.nan
    print(f"  latency p50 {p50:.3f} s, p95 {p95:.3f} s, p99 {p99:.3f} s, max {worst:.3f} s")
    return 0 if not failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--delay", type=float, default=1.0, help="the fake model's reply time, seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="AI_TIMEOUT_S for the client")
    parser.add_argument("--chunks", type=int, default=4, help="pieces each streamed reply comes in")
    parser.add_argument("--words", type=int, default=0, help="reply length in words (default: a short sentence)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.calls, args.concurrency, args.delay, args.timeout, args.words, args.chunks)))


if __name__ == "__main__":
    main()
