"""Tenant analytics over HTTP: admins read any tenant, a tenant's operators only theirs."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.support.clients import make_token
from tests.support.commands import inbound_for, publish_inbound
from tests.support.ids import uid
from tests.support.tenants import create_tenant

CONVERSATIONS = "/api/analytics/conversations"
INTENTS = "/api/analytics/intents"


async def _get(http, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with http.get(url, headers=headers or {}) as r:
        return r.status, await r.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tenant_analytics_over_http(stack, stack_env, http, admin_headers):
    tenant = await create_tenant(http, stack, admin_headers, credits=1)
    tid = tenant["tenantId"]
    started_ms = int(time.time() * 1000) - 1000
    await publish_inbound(stack_env["AMQP_URL"], inbound_for(tenant["number"], "Hola, ¿tienen envío a Madrid?"))
    await publish_inbound(stack_env["AMQP_URL"], inbound_for(tenant["number"], "¿Y el precio?"))

    url = stack.url(f"{CONVERSATIONS}?tenant={tid}")
    async with asyncio.timeout(20):  # the worker stores the messages asynchronously
        while True:
            status, body = await _get(http, url, admin_headers)
            assert status == 200, body
            if body["messages"]["inbound"] == 2:
                break
            await asyncio.sleep(0.2)
    assert body["tenant"] == tid and body["since"].endswith("Z")
    assert body["conversations"] == 1 and body["newConversations"] == 1
    assert body["messages"] == {"inbound": 2, "outbound": 0, "ai": 0}
    assert body["perChannel"] == {"twilio_whatsapp": {"conversations": 1, "messages": 2}}
    assert body["agent"] == {"replies": 0, "avgResponseMs": None}

    # The tenant's operator: their tenant, named or by default, on any node; `since` as epoch ms or ISO.
    operator = _bearer(make_token(uid("op"), role="operator", tenant=tid))
    status, own = await _get(http, stack.url(f"{CONVERSATIONS}?since={started_ms}", 1), operator)
    assert status == 200 and own["tenant"] == tid and own["messages"]["inbound"] == 2
    status, own = await _get(http, stack.url(f"{CONVERSATIONS}?tenant={tid}&since=2100-01-01T00:00:00Z"), operator)
    assert status == 200 and own["conversations"] == 0 and own["perChannel"] == {}
    status, intents = await _get(http, stack.url(INTENTS), operator)
    assert status == 200 and intents["tenant"] == tid
    assert intents["classified"] == 0 and intents["intents"] == []
    assert intents["leads"] == {"hot": 0, "warm": 0, "cold": 0}
    status, _ = await _get(http, stack.url(f"{INTENTS}?tenant={tid}"), admin_headers)
    assert status == 200

    # Everyone else is refused, before anything is revealed about the tenant.
    outsider = _bearer(make_token(uid("op2"), role="operator", tenant=f"{tid}-other"))
    user = _bearer(make_token(uid("user")))
    forged = _bearer(make_token(uid("op3"), role="admin") + "x")
    for path in (CONVERSATIONS, INTENTS):
        for headers in (outsider, user, forged, {}, {"x-admin-token": "wrong-admin-token-123"}):
            status, body = await _get(http, stack.url(f"{path}?tenant={tid}"), headers)
            assert status == 403 and body["error"]["code"] == "forbidden", (path, headers, body)
    status, body = await _get(http, stack.url(f"{CONVERSATIONS}?tenant=nope-{uuid.uuid4().hex}"), operator)
    assert status == 403

    # An admin JWT works like the admin token; unknown tenants are 404, bad input 400.
    admin_jwt = _bearer(make_token(uid("boss"), role="admin"))
    status, body = await _get(http, stack.url(f"{CONVERSATIONS}?tenant={tid}"), admin_jwt)
    assert status == 200 and body["messages"]["inbound"] == 2
    for path in (CONVERSATIONS, INTENTS):
        status, body = await _get(http, stack.url(f"{path}?tenant=nope-{uuid.uuid4().hex}"), admin_headers)
        assert status == 404 and body["error"]["code"] == "unknown_tenant"
        for since in ("yesterday", "2024-13-45", "99999999999999999999"):
            status, body = await _get(http, stack.url(f"{path}?tenant={tid}&since={since}"), admin_headers)
            assert status == 400 and body["error"]["code"] == "bad_request", (since, body)
    status, body = await _get(http, stack.url(CONVERSATIONS), admin_headers)
    assert status == 400  # an admin must name the tenant
