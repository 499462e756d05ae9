"""Tenants through the admin API and the CLI, and a tenant's operators in its conversations."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from tests.support.clients import ChatClient, make_token
from tests.support.commands import inbound_for, publish_inbound
from tests.support.ids import uid
from tests.support.processes import ROOT
from tests.support.tenants import create_tenant


async def test_tenant_admin_api(stack, http, admin_headers):
    tenant = await create_tenant(http, stack, admin_headers, systemPrompt="Eres el asistente de Acme.")
    tid = tenant["tenantId"]
    assert tenant["channels"] == [{"channel": "twilio_whatsapp", "address": tenant["number"]}]
    async with http.post(
        stack.url("/api/admin/tenants"), json={"tenantId": tid, "name": "x"}, headers=admin_headers
    ) as r:
        assert r.status == 409
    async with http.post(
        stack.url("/api/admin/tenants"), json={"tenantId": "bad id!", "name": "x"}, headers=admin_headers
    ) as r:
        assert r.status == 400
    async with http.get(stack.url("/api/admin/tenants")) as r:
        assert r.status == 403
    patch = {"autoReply": True, "addChannels": [{"channel": "instagram", "address": f"ig-{tid}"}]}
    async with http.patch(stack.url(f"/api/admin/tenants/{tid}", 1), json=patch, headers=admin_headers) as r:
        body = await r.json()
        assert r.status == 200 and body["autoReply"] is True and len(body["channels"]) == 2
    other = await create_tenant(http, stack, admin_headers)
    steal = {"addChannels": [{"channel": "twilio_whatsapp", "address": tenant["number"]}]}
    async with http.patch(stack.url(f"/api/admin/tenants/{other['tenantId']}"), json=steal, headers=admin_headers) as r:
        assert r.status == 409  # a number routes to exactly one tenant
    async with http.get(stack.url(f"/api/admin/tenants/{uuid.uuid4().hex}"), headers=admin_headers) as r:
        assert r.status == 404
    async with http.get(stack.url("/api/admin/tenants"), headers=admin_headers) as r:
        assert tid in {t["tenantId"] for t in (await r.json())["tenants"]}


def test_tenants_cli(stack_env):
    tid = uid("cli")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scripts.tenants", *args],
            cwd=ROOT,
            env=stack_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cli("add", tid, "--name", "Cli Co", "--channel", f"twilio_sms:+1999{tid[-6:]}", "--auto-reply")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["autoReply"] is True
    changed = cli("set", tid, "--prompt", "Hola", "--auto-reply", "off", "--add-channel", f"instagram:{tid}")
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(cli("show", tid).stdout)
    assert shown["systemPrompt"] == "Hola" and shown["autoReply"] is False and len(shown["channels"]) == 2
    assert tid in cli("list").stdout
    assert cli("add", tid, "--name", "again").returncode == 1
    assert cli("show", "nope-" + tid).returncode == 1
    assert cli("add", "x", "--name", "n", "--channel", "fax:+1").returncode == 2  # argparse refuses


async def test_operators_see_their_tenants_inbox_live_and_reply(stack, stack_env, http, admin_headers, clients, ledger):
    tenant = await create_tenant(http, stack, admin_headers, credits=2)
    tid = tenant["tenantId"]
    operator = ChatClient(uid("op"), "Olga")
    outsider = ChatClient(uid("op2"))
    clients += [operator, outsider]
    await operator.connect(stack.ports[0], token=make_token(operator.user_id, "Olga", role="operator", tenant=tid))
    await outsider.connect(stack.ports[1], token=make_token(outsider.user_id, role="operator", tenant="other"))

    await publish_inbound(stack_env["AMQP_URL"], inbound_for(tenant["number"], "Hola, ¿tienen envío a Madrid?"))
    update = await operator.wait_for("conversationUpdated")
    assert update["tenantId"] == tid and update["contact"] == "+34611111111" and update["contactName"] == "Lucía"
    room = update["roomId"]
    joined = await operator.join(room)
    assert joined["roomType"] == "conversation"
    assert [m["kind"] for m in joined["history"]] == ["inbound"]

    denied = await outsider.sio.call("joinRoom", {"roomId": room})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden"
    assert not outsider.events["conversationUpdated"]

    await publish_inbound(stack_env["AMQP_URL"], inbound_for(tenant["number"], "¿Y el precio?"))
    live = await operator.wait_for("newMessage", lambda m: m["message"] == "¿Y el precio?")
    assert live["kind"] == "inbound" and live["roomId"] == room

    ack = await operator.send(room, "Sí, enviamos a Madrid en 24 h.")
    assert ack["status"] == "accepted"
    echo = await operator.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    assert echo["kind"] == "outbound" and echo["userId"] == operator.user_id
    await asyncio.sleep(0.5)
    row = await ledger.fetchrow(
        "SELECT status, contact, body FROM outbound_messages WHERE message_id = $1", uuid.UUID(ack["messageId"])
    )
    assert row["contact"] == "+34611111111" and row["body"] == "Sí, enviamos a Madrid en 24 h."
    async with http.get(stack.url(f"/api/admin/tenants/{tid}"), headers=admin_headers) as r:
        assert (await r.json())["credits"] == 1  # 13 words of traffic opened one credit
