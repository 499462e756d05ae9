"""SIGTERM on a worker pool while model calls are in flight: the calls finish, what was only
prefetched is redelivered to the next pool, and every trigger gets one reply, one call, one charge.

dramatiq's own shutdown does it: the main process forwards SIGTERM to its worker processes,
whose worker threads finish their current message (up to ``--worker-shutdown-timeout``) and ack
it; the consumer then closes its channel, so RabbitMQ redelivers every message that was
prefetched but not started. ``CloseOnShutdown`` closes the connections only after that.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from infra import grants
from schemas.commands import AgentReply, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from tests.support import isolation
from tests.support.amqp import publish_commands, queue_counts
from tests.support.fake_openai import FakeOpenAI
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.waiting import wait_until

API_KEY = "sk-test-" + uuid.uuid4().hex
MODEL_DELAY_S = 2.5  # each reply takes this long: SIGTERM lands while calls wait on it
THREADS = 3
TRIGGERS = 8  # more than the threads: some are only prefetched when the signal comes
# The pool exits once its in-flight calls end (MODEL_DELAY_S) and its connections close. Generous.
EXIT_BOUND_S = 30


@pytest.fixture
async def slow_model():
    fake = FakeOpenAI(api_key=API_KEY, delay_s=MODEL_DELAY_S)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def ai_env(iso, stack_env, slow_model):
    vhost = f"{iso.vhost}_aiterm"
    isolation.create_vhost(vhost)
    yield (
        vhost,
        {
            **stack_env,
            "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
            "OPENAI_BASE_URL": slow_model.url,
            "OPENAI_API_KEY": API_KEY,
            "AI_MODEL": "fake-model",
            "AI_MAX_ATTEMPTS": "1",
            "AI_TIMEOUT_S": "30",
        },
    )
    isolation.delete_vhost(vhost)


def trigger(user: str) -> AgentReply:
    command_id, reply_id = agent_reply_ids(str(uuid.uuid4()))
    return AgentReply(
        command_id=command_id,
        reply_id=reply_id,
        trigger_message_id=command_id.removeprefix("ai:"),
        room_id=uid("room"),
        asker=f"user:{user}",
        asker_user_id=user,
        requested_at_ms=int(time.time() * 1000),
    )


async def test_sigterm_mid_call_finishes_or_requeues_and_doubles_nothing(ai_env, slow_model, ledger):
    vhost, env = ai_env
    users = [uid("asker") for _ in range(TRIGGERS)]
    for user in users:
        await grants.grant(ledger, f"user:{user}", 5, "test", "g", 0)
    commands = [trigger(user) for user in users]
    ids = [c.command_id for c in commands]
    applied = lambda: ledger.fetchval(  # noqa: E731
        "SELECT count(*) FROM inbox WHERE command_id = ANY($1) AND status = 'applied'", ids
    )

    procs = Processes(env)
    try:
        first = procs.workers("ai", processes=1, threads=THREADS)
        await publish_commands(env["AMQP_URL"], AI_QUEUE, AGENT_REPLY_ACTOR, commands)
        deadline = time.monotonic() + 60
        while slow_model.in_flight < THREADS and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        in_flight_at_signal = slow_model.in_flight
        asked_at_signal = len(slow_model.requests)
        assert in_flight_at_signal == THREADS, "the model calls were not in flight when the pool was signalled"
        assert await applied() == 0

        signalled = time.monotonic()
        code = await asyncio.to_thread(first.terminate, EXIT_BOUND_S)  # SIGTERM to the main process only
        elapsed = time.monotonic() - signalled
        assert code == 0, f"exit {code} after {elapsed:.1f}s:\n{first.log()[-3000:]}"
        assert elapsed < EXIT_BOUND_S
        # What it held it finished: every call it had started was answered and its reply stored.
        assert slow_model.in_flight == 0
        assert len(slow_model.requests) == asked_at_signal == THREADS
        assert all(r.status == 200 for r in slow_model.requests)
        finished_by_first = await applied()
        assert finished_by_first == THREADS
        # The rest went back to the queue, none in a dead letter.
        ready, unacked = await asyncio.to_thread(queue_counts, vhost, AI_QUEUE)
        assert (ready, unacked) == (TRIGGERS - THREADS, 0)
        assert await asyncio.to_thread(queue_counts, vhost, f"{AI_QUEUE}.XQ") == (0, 0)

        procs.workers("ai", processes=1, threads=THREADS)
        await wait_until(applied, TRIGGERS, timeout=120)
        await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, AI_QUEUE), (0, 0), timeout=60)
    finally:
        procs.stop_all()

    # One model call per trigger: none was asked twice.
    assert len(slow_model.requests) == TRIGGERS
    for cmd in commands:
        replies = await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(cmd.reply_id))
        usage = await ledger.fetch("SELECT status FROM ai_usage WHERE command_id = $1", cmd.command_id)
        charges = await ledger.fetchval("SELECT count(*) FROM ledger_transactions WHERE reference = $1", cmd.command_id)
        assert (replies, [u["status"] for u in usage], charges) == (1, ["ok"], 1), cmd.command_id
    charged = await ledger.fetchval(
        "SELECT sum(credits_charged_total) FROM accounts WHERE account_id = ANY($1)", [f"user:{u}" for u in users]
    )
    assert charged == TRIGGERS
    print(f"SIGTERM with {in_flight_at_signal} calls in flight: exit 0 after {elapsed:.1f}s")
