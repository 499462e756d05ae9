"""One correlation id, the command_id, on the JSON log lines of a command's whole path:

socket or webhook handler on ingress (``command.published``) → the worker thread that processes
it (dramatiq's and the middleware's own lines) → the actor's coroutine (``command.done``) → its
published result (``result.published``) and follow-up commands (``caused_by``). Real processes; the
worker runs one thread, so consecutive commands share the thread and event loop a leak would use.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from infra.publisher import CommandPublisher
from schemas.commands import inbound_ids, send_command_ids
from schemas.queues import ALL_QUEUES, CHAT_QUEUE, CLASSIFY_ACTOR, MARK_READ_ACTOR, capability_of
from tests.support import isolation
from tests.support.clients import ChatClient
from tests.support.dead_letters import invalid_mark_read
from tests.support.ids import uid
from tests.support.json_logs import Line, having, json_lines
from tests.support.processes import Proc, Processes
from tests.support.twilio_webhooks import post_twilio, twilio_env


@dataclass
class LoggedStack:
    amqp_url: str
    ingress: Proc
    workers: Proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ingress.port}"


@pytest.fixture
def logged_stack(iso, stack_env, fake_twilio) -> Iterator[LoggedStack]:
    """Ingress and a one-thread chat worker in a vhost of their own, logging JSON at INFO."""
    vhost = f"{iso.vhost}_corr"
    isolation.create_vhost(vhost)
    amqp_url = f"{isolation.AMQP_BASE}/{vhost}"
    procs = Processes(
        {**stack_env, **twilio_env(fake_twilio), "AMQP_URL": amqp_url, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    )
    try:
        node = procs.ingress()
        workers = procs.workers("chat", processes=1, threads=1)
        yield LoggedStack(amqp_url, node, workers)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def until(proc: Proc, found: Callable[[list[Line]], bool], what: str, timeout: float = 60) -> list[Line]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        lines = json_lines(proc)
        if found(lines):
            return lines
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{proc.name}: no {what} in {timeout}s:\n{proc.log()[-3000:]}")


async def test_one_command_id_from_socket_and_webhook_to_worker_and_result(
    logged_stack, http, admin_headers, fake_twilio, clients
):
    stack = logged_stack
    tenant_id, number = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}"
    async with http.post(
        f"{stack.base}/api/admin/tenants",
        headers=admin_headers,
        json={
            "tenantId": tenant_id,
            "name": "Shop",
            "channels": [{"channel": "twilio_whatsapp", "address": number}],
        },
    ) as r:
        assert r.status == 201, await r.text()
    alice = ChatClient(uid("alice"), "Alice")
    clients.append(alice)
    async with http.post(
        f"{stack.base}/api/credits/grant/{alice.user_id}",
        headers=admin_headers,
        json={"credits": 2, "reason": "test", "idempotencyKey": "g1"},
    ) as r:
        assert r.status in (200, 201), await r.text()
    await alice.connect(stack.ingress.port)
    room = uid("room")
    await alice.join(room)

    # Two commands in a row through the same worker thread, then an inbound webhook.
    first_id, _ = send_command_ids(alice.user_id, "corr-1")
    second_id, _ = send_command_ids(alice.user_id, "corr-2")
    for n, client_id in enumerate(("corr-1", "corr-2"), 1):
        ack = await alice.send(room, f"hola {client_id}", clientMessageId=client_id)
        assert ack["status"] == "accepted", ack
        # Applied before the next is sent: two deliveries of their own, not one bundle of the
        # queued ones (workers/partition_consumer.py).
        await alice.wait_count("newMessage", n)
    inbound = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": fake_twilio.account_sid,
        "From": "whatsapp:+34612345678",
        "To": f"whatsapp:{number}",
        "Body": "¿Hay envíos?",
        "ProfileName": "Marta",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    inbound_id, inbound_message_id = inbound_ids("twilio", inbound["MessageSid"])
    status, _, _ = await post_twilio(http, f"{stack.base}/webhooks/twilio", inbound)
    assert status == 200

    # Ingress: the confirmed publish of each, with the handler's context.
    edge = json_lines(stack.ingress)
    (published,) = having(edge, event="command.published", command_id=first_id)
    assert capability_of(published["queue"]) == CHAT_QUEUE and published["actor"] == "chat_send_message"
    assert published["socket_event"] == "sendMessage" and published["user_id"] == alice.user_id
    assert "caused_by" not in published
    (hook,) = having(edge, event="command.published", command_id=inbound_id)
    assert hook["provider"] == "twilio" and hook["actor"] == "channel_inbound_message"

    # Worker: the coroutine's lines carry the message's fields (actor, message_id) it never logs itself.
    lines = await until(stack.workers, lambda ls: len(having(ls, event="command.done")) >= 3, "3 command.done")
    for command_id, actor in (
        (first_id, "chat_send_message"),
        (second_id, "chat_send_message"),
        (inbound_id, "channel_inbound_message"),
    ):
        (done,) = having(lines, event="command.done", command_id=command_id)
        assert done["actor"] == actor and capability_of(done["queue"]) == CHAT_QUEUE and done["message_id"]
        (result,) = having(lines, event="result.published", command_id=command_id)
        assert result["message_id"] == done["message_id"] and result["emits"] >= 1
    assert "newMessage" in having(lines, event="result.published", command_id=first_id)[0]["event_names"]

    # The follow-up the inbound message caused names it.
    (classify,) = having(lines, event="command.published", actor=CLASSIFY_ACTOR)
    assert classify["caused_by"] == inbound_id and classify["command_id"] == f"classify:{inbound_message_id}"

    # No leak: a delivery's lines carry its own command id, and no other delivery's line carries it.
    deliveries = {line["command_id"]: line["message_id"] for line in having(lines, event="command.done")}
    for line in lines:
        if line.get("message_id") in deliveries.values():
            own = next(cid for cid, mid in deliveries.items() if mid == line["message_id"])
            assert line.get("caused_by", line.get("command_id")) == own, line
        elif line.get("command_id") in deliveries:
            pytest.fail(f"a line outside its delivery carries {line['command_id']}: {line}")
    # Opened lazily by the first command, the worker's RabbitMQ connection does not log as part of it.
    assert all("command_id" not in line for line in having(lines, event="amqp.connected"))


async def test_the_worker_thread_lines_of_a_failing_command_carry_its_id(logged_stack):
    """dramatiq's own lines and those of the retry and fail-closed middleware run in the worker thread."""
    stack = logged_stack
    bad = invalid_mark_read(uid("mallory"))
    publisher = CommandPublisher(stack.amqp_url, ALL_QUEUES, 10.0, connection_name="test-corr")
    await publisher.start()
    try:
        await publisher.publish_payload(CHAT_QUEUE, MARK_READ_ACTOR, bad)
    finally:
        await publisher.close()

    lines = await until(stack.workers, lambda ls: bool(having(ls, event="command.failed")), "command.failed")
    (failed,) = having(lines, event="command.failed")
    assert failed["command_id"] == bad["command_id"] and failed["logger"] == "workers.middleware.fail_closed"
    dramatiq_lines = [
        line
        for line in lines
        if line.get("logger", "").startswith("dramatiq.") and line.get("message_id") == failed["message_id"]
    ]
    loggers = {line["logger"] for line in dramatiq_lines}
    assert "dramatiq.worker.WorkerThread" in loggers, dramatiq_lines
    assert any(name.startswith("dramatiq.middleware.retries.") for name in loggers), dramatiq_lines
    for line in dramatiq_lines:
        assert (line["command_id"], line["actor"], line["queue"]) == (bad["command_id"], MARK_READ_ACTOR, CHAT_QUEUE)
