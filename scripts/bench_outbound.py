"""Outbound benchmark: one worker process against a fake provider that answers in 500 ms.

    .venv/bin/python -m scripts.bench_outbound --messages 2000 --threads 128 --delay 0.5

Creates a scratch database and RabbitMQ vhost, starts the fake provider in this process, stores N
outbound messages, publishes N ``SendOutbound`` commands, then runs
``python -m workers --queues outbound --processes 1 --threads T`` against them and prints the
most requests the provider saw in flight at once, sends/s, the total time, and whether every
message was sent exactly once (one provider request per message, one recorded id per row).
Everything it created (the worker, by pid; the vhost; the database) is removed at the end.

Run from the repository root: the fake provider lives in ``tests/support``.
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
from pathlib import Path

import asyncpg

from domain.channels import Channel
from infra import db
from schemas.commands import SendOutbound
from schemas.queues import OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from scripts.bench_workers import publish_bulk, start_worker, stop_worker
from tests.support import isolation
from tests.support.fake_providers import FakeMeta, FakeTwilio

ROOT = Path(__file__).resolve().parents[1]
ADDRESS = {
    Channel.TWILIO_SMS: "+14155238886",
    Channel.TWILIO_WHATSAPP: "+14155238886",
    Channel.META_WHATSAPP: "106540352242922",
    Channel.INSTAGRAM: "17841400000000001",
}
CONTACT = {
    Channel.TWILIO_SMS: "+34600000001",
    Channel.TWILIO_WHATSAPP: "+34600000001",
    Channel.META_WHATSAPP: "34600000001",
    Channel.INSTAGRAM: "6543210987654321",
}


async def seed(pool: asyncpg.Pool, channel: Channel, n: int) -> list[uuid.UUID]:
    tenant, conversation = "bench", uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", tenant)
        await conn.execute(
            "INSERT INTO conversations (conversation_id, tenant_id, channel, address, contact)"
            " VALUES ($1, $2, $3, $4, $5)",
            conversation,
            tenant,
            channel.value,
            ADDRESS[channel],
            CONTACT[channel],
        )
        await conn.copy_records_to_table(
            "outbound_messages",
            columns=["message_id", "conversation_id", "tenant_id", "channel", "address", "contact", "body"],
            records=[
                (i, conversation, tenant, channel.value, ADDRESS[channel], CONTACT[channel], f"bench {i}") for i in ids
            ],
        )
    return ids


async def publish(amqp_url: str, ids: list[uuid.UUID]) -> None:
    sends = [SendOutbound(command_id=f"send:{i}", message_id=str(i)) for i in ids]
    await publish_bulk(amqp_url, OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, sends)


async def run(args: argparse.Namespace) -> int:
    channel = Channel(args.channel)
    run_id = secrets.token_hex(4)
    database, vhost, prefix = f"gk_bench_{run_id}", f"gk_bench_{run_id}", f"gkbench{run_id}"
    database_url = f"{isolation.PG_BASE}/{database}"
    amqp_url = f"{isolation.AMQP_BASE}/{vhost}"
    worker: subprocess.Popen | None = None
    vhost_made = False
    try:
        await db.migrate(database_url)
        await asyncio.to_thread(isolation.create_vhost, vhost)
        vhost_made = True
        async with FakeTwilio(delay_s=args.delay) as twilio, FakeMeta(delay_s=args.delay) as meta:
            fake = twilio if channel.provider == "twilio" else meta
            pool = await db.create_pool(database_url, max_size=4)
            try:
                ids = await seed(pool, channel, args.messages)
                await publish(amqp_url, ids)
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "META_"))},
                    "DATABASE_URL": database_url,
                    "AMQP_URL": amqp_url,
                    "REDIS_URL": isolation.REDIS_BASE,
                    "KEY_PREFIX": prefix,
                    "JWT_SECRET": secrets.token_hex(16),
                    "ADMIN_TOKEN": secrets.token_hex(16),
                    "TWILIO_API_BASE_URL": twilio.url,
                    "TWILIO_ACCOUNT_SID": twilio.account_sid,
                    "TWILIO_AUTH_TOKEN": twilio.auth_token,
                    "META_GRAPH_URL": meta.url,
                    "META_ACCESS_TOKEN": meta.access_token,
                    "LOG_LEVEL": args.log_level,
                    "LOG_FORMAT": "json",
                    "PYTHONUNBUFFERED": "1",
                }
                if args.db_pool_size:
                    env["WORKER_DB_POOL_SIZE"] = str(args.db_pool_size)
                log_path = ROOT / "tests" / "artifacts" / "logs" / f"bench-outbound-{time.strftime('%H%M%S')}.log"
                print(
                    f"{args.messages} x {channel} through 1 worker process x {args.threads} threads,"
                    f" provider reply {args.delay * 1000:.0f} ms; worker log: {log_path}"
                )
                started = time.monotonic()
                worker = start_worker(env, OUTBOUND_QUEUE, args.threads, log_path)
                sent, last_change, last_sent = 0, started, 0
                while sent < args.messages:
                    await asyncio.sleep(0.1)
                    sent = await pool.fetchval(
                        "SELECT count(*) FROM outbound_messages WHERE status IN ('sent', 'failed')"
                    )
                    now = time.monotonic()
                    if sent != last_sent:
                        last_change, last_sent = now, sent
                    if worker.poll() is not None:
                        print(f"the worker exited with {worker.returncode}; see {log_path}")
                        return 1
                    if now - last_change > args.stall_s:
                        print(f"no progress for {args.stall_s} s at {sent}/{args.messages}; see {log_path}")
                        return 1
                finished = time.monotonic()
                rows = await pool.fetchrow(
                    "SELECT count(*) FILTER (WHERE status = 'sent') AS sent,"
                    " count(*) FILTER (WHERE status = 'failed') AS failed,"
                    " count(DISTINCT provider_message_id) AS ids, max(attempts) AS max_attempts"
                    " FROM outbound_messages"
                )
                assert rows is not None  # an aggregate returns one row
            finally:
                await pool.close()
            first_request = min(r.started for r in fake.requests)
            last_answer = max(r.finished or r.started for r in fake.requests)
            counts = fake.counts_by_text()
            per_message = {f"bench {i}": counts.get(f"bench {i}", 0) for i in ids}
            once = sum(1 for c in per_message.values() if c == 1)
            window = last_answer - first_request
            busy = sum((r.finished or last_answer) - r.started for r in fake.requests)
            print(f"concurrent requests at the provider: max {fake.max_in_flight}, mean {busy / window:.1f}")
            print(f"sends/s (first request to last answer): {args.messages / window:.1f} over {window:.2f} s")
            print(f"total time (worker start to all recorded): {finished - started:.2f} s")
            print(
                f"rows: {rows['sent']} sent, {rows['failed']} failed, {rows['ids']} distinct provider ids,"
                f" max attempts {rows['max_attempts']}"
            )
            print(f"provider requests: {len(fake.requests)}; messages requested exactly once: {once}/{args.messages}")
            ok = once == args.messages == rows["sent"] == rows["ids"] == len(fake.requests)
            print("EXACTLY ONCE: OK" if ok else "EXACTLY ONCE: MISMATCH")
            return 0 if ok else 1
    finally:
        if worker is not None:
            await asyncio.to_thread(stop_worker, worker)
        if vhost_made:
            await asyncio.to_thread(isolation.delete_vhost, vhost)
        await isolation.drop_database(database)
        await asyncio.to_thread(isolation.delete_redis_keys, prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=128)
    parser.add_argument("--delay", type=float, default=0.5, help="the fake provider's reply time, seconds")
    parser.add_argument("--channel", choices=[c.value for c in Channel], default=Channel.TWILIO_WHATSAPP.value)
    parser.add_argument("--db-pool-size", type=int, default=0, help="WORKER_DB_POOL_SIZE (default: the setting's)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--stall-s", type=float, default=60.0)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
