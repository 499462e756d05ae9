"""A running system for the plans tests: ingress, chat/ai/billing pools, a fake model and a fake Stripe."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from tests.support import isolation
from tests.support.processes import Proc, Processes
from tests.support.stripe_objects import PLANS_JSON
from tests.support.stripe_signing import body_of, stripe_signature

WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex
STRIPE_KEY = "sk_test_" + uuid.uuid4().hex
METER_EVENT = "ai_tokens"


@dataclass
class PlansStack:
    node: Proc
    env: dict[str, str]

    def url(self, path: str, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.node.port}{path}"


@contextlib.contextmanager
def plans_stack(
    iso, stack_env: dict[str, str], name: str, queues: tuple[str, ...], **extra: str
) -> Iterator[PlansStack]:
    """Processes in a vhost of their own, so nothing else consumes their commands."""
    vhost = f"{iso.vhost}_{name}"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "RATE_LIMITS": "200/1s",
        "PLANS": PLANS_JSON,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        **extra,
    }
    procs = Processes(env)
    try:
        node = procs.ingress()
        for queue in queues:
            procs.workers(queue, processes=1, threads=8)
        yield PlansStack(node, env)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def post_stripe(http: aiohttp.ClientSession, stack: PlansStack, payload: dict) -> dict:
    body = body_of(payload)
    headers = {"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET), "content-type": "application/json"}
    async with http.post(stack.url("/webhooks/stripe"), data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
