"""GET /api/credits/history/{userId}: a user's ledger entries, newest first, page by page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.admin_api import grant, stats
from tests.support.clients import connected, make_token, send_tip
from tests.support.ids import uid
from tests.support.isolation import ADMIN_TOKEN
from tests.support.processes import Proc
from tests.support.stacks import start_billing_worker


@pytest.fixture(scope="module")
def billing_worker(stack) -> Iterator[Proc]:
    yield from start_billing_worker(stack)


async def history(http, stack, user_id: str, headers: dict | None = None, **query) -> tuple[int, dict]:
    async with http.get(
        stack.url(f"/api/credits/history/{user_id}"),
        params={k: str(v) for k, v in query.items()},
        headers=headers if headers is not None else {"x-admin-token": ADMIN_TOKEN},
    ) as resp:
        return resp.status, await resp.json()


async def all_pages(http, stack, user_id: str, headers: dict | None = None, limit: int = 2) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        status, body = await history(http, stack, user_id, headers, **query)
        assert status == 200, body
        pages.append(body["entries"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


async def test_history_pages_through_grants_charges_and_tips_with_signs_and_counterparties(
    stack, billing_worker, http, clients
):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 5, "g")
    await grant(http, stack, bob_id, 3, "g")
    alice = await connected(clients, stack, alice_id)
    bob = await connected(clients, stack, bob_id, node=1)
    room = uid("room")
    await alice.join(room)
    ack = await alice.send(room, "w " * 1500)  # opens 2 credits
    assert ack["status"] == "accepted", ack
    await alice.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    out = await send_tip(alice, toUserId=bob_id, credits=1, clientTipId="to-bob")
    await alice.wait_for("tipSent", lambda t: t["tipId"] == out["tipId"])
    back = await send_tip(bob, toUserId=alice_id, credits=2, clientTipId="to-alice")
    await alice.wait_for("tipReceived", lambda t: t["tipId"] == back["tipId"])

    pages = await all_pages(http, stack, alice_id, {"Authorization": f"Bearer {make_token(alice_id)}"})
    assert [len(p) for p in pages] == [2, 2]
    entries = [e for page in pages for e in page]
    summary = [(e["kind"], e["amount"], e["direction"], e["counterparty"]["account"]) for e in entries]
    assert summary == [
        ("tip", 2, "in", f"user:{bob_id}"),
        ("tip", -1, "out", f"user:{bob_id}"),
        ("charge", -2, "out", "system:revenue"),
        ("grant", 5, "in", "system:grants"),
    ]
    assert entries[0]["reference"] == f"tip:{bob_id}:to-alice"
    assert entries[1]["reference"] == f"tip:{alice_id}:to-bob"
    assert entries[0]["counterparty"] == {"account": f"user:{bob_id}", "type": "user", "id": bob_id}
    assert entries[2]["memo"] == f"1500 words in {room}"
    assert [e["transactionId"] for e in entries] == sorted((e["transactionId"] for e in entries), reverse=True)
    assert sum(e["amount"] for e in entries) == (await stats(http, stack, alice_id))["credits"] == 4

    # The same movements seen from the other side carry the opposite signs.
    bob_pages = await all_pages(http, stack, bob_id, limit=50)
    assert [(e["kind"], e["amount"]) for e in bob_pages[0]] == [("tip", -2), ("tip", 1), ("grant", 3)]

    status, whole = await history(http, stack, alice_id)  # the default limit holds everything here
    assert status == 200 and whole["entries"] == entries and whole["nextCursor"] is None


async def test_history_is_readable_by_the_user_and_admins_only(stack, http):
    alice_id = uid("alice")
    await grant(http, stack, alice_id, 1, "g")
    cases = [
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": f"Bearer {make_token(alice_id, ttl_s=-120)}"}, 401),
        ({"x-admin-token": "wrong-token-wrong-token"}, 401),
        ({"Authorization": f"Bearer {make_token(uid('mallory'))}"}, 403),
        ({"Authorization": f"Bearer {make_token(alice_id)}"}, 200),
        ({"Authorization": f"Bearer {make_token(uid('boss'), role='admin')}"}, 200),
        ({"x-admin-token": ADMIN_TOKEN}, 200),
    ]
    for headers, expected in cases:
        status, body = await history(http, stack, alice_id, headers)
        assert status == expected, (headers, body)
        if expected != 200:
            assert body["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")
        else:
            assert [e["kind"] for e in body["entries"]] == ["grant"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": -1}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "djE6MTI="}, "cursor"),  # base64 of "v1:12": well encoded, not a cursor
    ],
)
async def test_bad_paging_parameters_get_400(stack, http, query, needle):
    alice_id = uid("alice")
    await grant(http, stack, alice_id, 1, "g")
    status, body = await history(http, stack, alice_id, **query)
    assert status == 400 and body["error"]["code"] == "bad_request" and needle in body["error"]["message"]


async def test_an_unknown_user_gets_404(stack, http):
    status, body = await history(http, stack, uid("nobody"))
    assert status == 404 and body["error"]["code"] == "unknown_user"
