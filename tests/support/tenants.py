"""A tenant with a WhatsApp number of its own, made through the admin API."""

from __future__ import annotations

import uuid

from tests.support.ids import uid


async def create_tenant(http, stack, admin_headers, credits: int = 0, **body) -> dict:
    """The tenant as the API answers, plus its ``number``; ``credits`` granted to it if any."""
    tenant_id = uid("acme")
    number = f"+1555{uuid.uuid4().int % 10**7:07d}"
    payload = {
        "tenantId": tenant_id,
        "name": "Acme",
        "channels": [{"channel": "twilio_whatsapp", "address": number}],
        **body,
    }
    async with http.post(stack.url("/api/admin/tenants"), json=payload, headers=admin_headers) as r:
        assert r.status == 201, await r.text()
        tenant = await r.json()
    if credits:
        async with http.post(
            stack.url(f"/api/admin/tenants/{tenant_id}/grant"),
            headers=admin_headers,
            json={"credits": credits, "reason": "t", "idempotencyKey": "seed"},
        ) as r:
            assert r.status == 201
    return {**tenant, "number": number}
