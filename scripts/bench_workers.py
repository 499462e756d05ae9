"""What the worker benchmarks share: filling a queue fast, and a worker pool started and stopped by pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import aio_pika

from infra.amqp import connect_first, encode_actor_message, topology
from schemas.base import Command

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], queue: str, threads: int, log_path: Path) -> subprocess.Popen:
    """One worker process for ``queue``, in a session of its own, logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        args = ["-m", "workers", "--queues", queue, "--processes", "1", "--threads", str(threads)]
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen) -> None:
    """Only the process group this script started, by its pid."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # dramatiq's main process stops its worker gracefully
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: exactly the tree this script started
        proc.wait(timeout=30)


async def publish_bulk(amqp_url: str, queue: str, actor: str, commands: Sequence[Command], batch: int = 500) -> None:
    """Publish persistent commands ``batch`` at a time, each confirmed by RabbitMQ."""
    connection = await connect_first(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for name, arguments in topology(queue):
            await channel.declare_queue(name, durable=True, arguments=arguments)

        async def one(cmd: Command) -> None:
            message_id = str(uuid.uuid4())
            body = encode_actor_message(queue, actor, {"command": cmd.model_dump(mode="json")}, message_id)
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id),
                routing_key=queue,
            )

        for start in range(0, len(commands), batch):
            await asyncio.gather(*(one(c) for c in commands[start : start + batch]))
