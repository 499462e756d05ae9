"""AI worker benchmark: one ``ai`` worker process against a fake model that answers in 1 s.

    .venv/bin/python -m scripts.bench_ai_worker --calls 1000 --threads 256 --delay 1.0

Creates a scratch database, RabbitMQ vhost and Redis key prefix; stores one ``@AgenteIA`` chat
message per call (with its ``chat.send_message`` inbox row, as ingress and the chat worker leave
it), grants each of ``--users`` askers plenty of credits, publishes N ``AgentReply`` commands to the
``ai`` queue (publisher confirms), starts the fake OpenAI-compatible model in this process, then runs
``python -m workers --queues ai --processes 1 --threads T`` against them. While waiting it samples
the model's requests in flight every 50 ms, and prints the most and the average in flight, replies/s
and whether every command was answered exactly once (one model request, one ``ok`` usage row, one
``ai.reply`` inbox row per call). Everything it created (the worker, by pid; the vhost; the database;
the Redis keys) is removed at the end.

Run from the repository root: the fake model lives in ``tests/support``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from infra import db
from infra.grants import grant
from schemas.commands import AgentReply, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from schemas.socket_events import NewMessage
from scripts.bench_workers import publish_bulk, start_worker, stop_worker
from tests.support import isolation
from tests.support.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
ROOMS = 20
TEXT = "@AgenteIA hola"
SAMPLE_S = 0.05


def user_id(i: int, users: int) -> str:
    return f"bench-user-{i % users}"


async def seed(pool: asyncpg.Pool, calls: int, users: int) -> list[AgentReply]:
    """One trigger message per call (and its inbox row), and credits for every asker."""
    now_ms = int(time.time() * 1000)
    created = datetime.fromtimestamp(now_ms / 1000, UTC)
    messages, inbox_rows, commands = [], [], []
    for i in range(calls):
        message_id, uid, room = str(uuid.uuid4()), user_id(i, users), f"bench-room-{i % ROOMS}"
        payload = NewMessage(
            messageId=message_id,
            id=message_id,
            roomId=room,
            userId=uid,
            username=f"Bench {uid}",
            message=TEXT,
            content=TEXT,
            words=len(TEXT.split()),
            timestamp=now_ms,
            kind="user",
        ).model_dump(mode="json")
        messages.append((uuid.UUID(message_id), room, uid, len(TEXT.split()), payload, created))
        inbox_rows.append((f"msg:{message_id}", "chat.send_message", uid, "applied", {"message_id": message_id}))
        command_id, reply_id = agent_reply_ids(message_id)
        cmd = AgentReply(
            command_id=command_id,
            reply_id=reply_id,
            trigger_message_id=message_id,
            room_id=room,
            asker=f"user:{uid}",
            asker_user_id=uid,
            requested_at_ms=now_ms,
        )
        commands.append(cmd)
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            messages,
        )
        await conn.executemany(
            "INSERT INTO inbox (command_id, kind, user_id, status, result) VALUES ($1, $2, $3, $4, $5)", inbox_rows
        )
    for u in range(min(users, calls)):
        await grant(pool, f"user:bench-user-{u}", 1_000_000, "bench", f"bench-ai-{u}")
    return commands


async def publish(amqp_url: str, commands: list[AgentReply]) -> None:
    await publish_bulk(amqp_url, AI_QUEUE, AGENT_REPLY_ACTOR, commands)


async def run(args: argparse.Namespace) -> int:
    run_id = secrets.token_hex(4)
    database, vhost, prefix = f"gk_bench_{run_id}", f"gk_bench_{run_id}", f"gkbench{run_id}"
    database_url = f"{isolation.PG_BASE}/{database}"
    amqp_url = f"{isolation.AMQP_BASE}/{vhost}"
    worker: subprocess.Popen | None = None
    vhost_made = False
    api_key = "sk-bench-" + secrets.token_hex(8)
    fake = FakeOpenAI(api_key=api_key, delay_s=args.delay)
    try:
        await asyncio.to_thread(isolation.create_vhost, vhost)
        vhost_made = True
        await db.migrate(database_url)
        pool = await db.create_pool(database_url, max_size=4)
        try:
            commands = await seed(pool, args.calls, args.users)
            await publish(amqp_url, commands)
            await fake.start()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AI_"))},
                "DATABASE_URL": database_url,
                "AMQP_URL": amqp_url,
                "REDIS_URL": isolation.REDIS_BASE,
                "KEY_PREFIX": prefix,
                "JWT_SECRET": secrets.token_hex(16),
                "ADMIN_TOKEN": secrets.token_hex(16),
                "OPENAI_BASE_URL": fake.url,
                "OPENAI_API_KEY": api_key,
                "AI_MODEL": "fake-model",
                "WORKER_DB_POOL_SIZE": str(args.db_pool_size),
                "LOG_LEVEL": args.log_level,
                "LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
            log_path = ROOT / "tests" / "artifacts" / "logs" / f"bench-ai-{time.strftime('%H%M%S')}.log"
            print(
                f"{args.calls} agent replies ({min(args.users, args.calls)} askers) through 1 worker process"
                f" x {args.threads} threads, model reply {args.delay * 1000:.0f} ms;"
                f" worker log: {log_path}"
            )
            started = time.monotonic()
            worker = start_worker(env, AI_QUEUE, args.threads, log_path)
            samples: list[tuple[float, int]] = []
            done, next_poll, deadline = 0, started, started + args.timeout
            while done < args.calls:
                await asyncio.sleep(SAMPLE_S)
                now = time.monotonic()
                samples.append((now, fake.in_flight))
                if now >= next_poll:  # the database every 250 ms; the fake every 50 ms
                    next_poll = now + 0.25
                    done = await pool.fetchval("SELECT count(*) FROM inbox WHERE kind = 'ai.reply'")
                if worker.poll() is not None:
                    print(f"the worker exited with {worker.returncode}; see {log_path}")
                    return 1
                if now > deadline:
                    print(f"timed out after {args.timeout:.0f} s at {done}/{args.calls}; see {log_path}")
                    return 1
            finished = time.monotonic()
            rows = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM inbox WHERE kind = 'ai.reply' AND status = 'applied') AS applied,"
                " (SELECT count(*) FROM inbox WHERE kind = 'ai.reply') AS replies,"
                " (SELECT count(*) FROM ai_usage WHERE status = 'ok') AS usage_ok,"
                " (SELECT count(*) FROM ai_usage) AS usage_all,"
                " (SELECT count(DISTINCT command_id) FROM ai_usage) AS usage_commands,"
                " (SELECT count(*) FROM messages WHERE user_id = 'agent') AS agent_messages"
            )
            assert rows is not None  # a SELECT without FROM returns one row
        finally:
            await pool.close()
        requests = fake.requests
        first_request = min(r.started for r in requests)
        last_answer = max(r.finished or r.started for r in requests)
        busy_s = last_answer - first_request
        busy_samples = [n for t, n in samples if first_request <= t <= last_answer]
        sampled_avg = sum(busy_samples) / len(busy_samples) if busy_samples else 0.0
        exact_avg = sum((r.finished or last_answer) - r.started for r in requests) / busy_s
        if args.timeline:
            for second in range(int(busy_s) + 1):
                window = [n for t, n in samples if 0 <= t - first_request - second < 1]
                if window:
                    print(f"  t+{second:>3} s  in flight avg {sum(window) / len(window):6.1f}  max {max(window)}")
        print(f"calls: {args.calls}   threads: {args.threads}")
        print(
            f"model calls in flight: max {fake.max_in_flight}, avg {sampled_avg:.1f} over the busy period"
            f" ({len(busy_samples)} samples at {SAMPLE_S * 1000:.0f} ms; time-weighted {exact_avg:.1f})"
        )
        at_target = sum(1 for n in busy_samples if n >= args.target)
        print(
            f"samples with >= {args.target} in flight: {at_target} of {len(busy_samples)}"
            f" ({100 * at_target / max(len(busy_samples), 1):.0f}%)"
        )
        print(f"replies/s (first request to last answer): {args.calls / busy_s:.1f} over {busy_s:.2f} s")
        print(f"total time (worker start to all recorded): {finished - started:.2f} s")
        print(
            f"inbox ai.reply rows: {rows['replies']} ({rows['applied']} applied); ai_usage ok: {rows['usage_ok']}"
            f" of {rows['usage_all']} ({rows['usage_commands']} commands); agent messages:"
            f" {rows['agent_messages']}; model requests: {len(requests)}"
        )
        ok = args.calls == rows["applied"] == rows["usage_ok"] == rows["usage_all"] == rows["usage_commands"]
        ok = ok and args.calls == rows["agent_messages"] == len(requests)
        print("EXACTLY ONCE: OK" if ok else "EXACTLY ONCE: MISMATCH")
        target = fake.max_in_flight >= args.target
        print(f"IN FLIGHT >= {args.target}: {'OK' if target else 'NO'}")
        return 0 if ok and target else 1
    finally:
        if worker is not None:
            await asyncio.to_thread(stop_worker, worker)
        await fake.close()
        if vhost_made:
            await asyncio.to_thread(isolation.delete_vhost, vhost)
        await isolation.drop_database(database)
        await asyncio.to_thread(isolation.delete_redis_keys, prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=256)
    parser.add_argument("--delay", type=float, default=1.0, help="the fake model's reply time, seconds")
    parser.add_argument("--users", type=int, default=200, help="askers the calls are spread over")
    parser.add_argument("--target", type=int, default=200, help="calls in flight the run must reach")
    parser.add_argument("--db-pool-size", type=int, default=20, help="WORKER_DB_POOL_SIZE")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every reply")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--timeline", action="store_true", help="print calls in flight second by second")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
