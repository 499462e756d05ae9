"""Wallets and BEZ deposits against the real processes: an ingress node, the chain watcher
hosting the embedded chain, a ``chain`` worker pool, and ``python -m scripts.chain``."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.support.clients import ChatClient, make_token
from tests.support.processes import ROOT, Proc, Processes, free_port, wait_for_log

CONFIRMATIONS = 2


@dataclass
class ChainStack:
    processes: Processes
    node: Proc
    watcher: Proc
    env: dict[str, str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.node.port}{path}"


def start_watcher(procs: Processes, *args: str, **env: str) -> Proc:
    proc = procs._spawn("chain-watcher", ["-m", "workers.chain_watcher", *args], env)
    wait_for_log(proc, "chain.serve_only" if "--serve-only" in args else "chain.watcher.started")
    return proc


@pytest.fixture(scope="module")
def chain_stack(stack_env: dict[str, str]) -> Iterator[ChainStack]:
    env = {
        **stack_env,
        "CHAIN_RPC_PORT": str(free_port()),
        "CHAIN_CONFIRMATIONS": str(CONFIRMATIONS),
        "CHAIN_BLOCK_TIME_S": "0",
        "CHAIN_POLL_INTERVAL_S": "0.2",
        "WEB3_PROVIDER_URL": "",
    }
    procs = Processes(env)
    try:
        watcher = start_watcher(procs)
        procs.workers("chain", processes=1, threads=4)
        node = procs.ingress()
        yield ChainStack(procs, node, watcher, env)
    finally:
        procs.stop_all()


async def cli(stack: ChainStack, *args: str, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.chain",
        *args,
        cwd=ROOT,
        env=env or stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def challenge(http, stack: ChainStack, user: str) -> dict:
    async with http.post(stack.url("/api/wallet/link/challenge"), headers=auth(user)) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def signed(message: str, account) -> str:
    return Account.sign_message(encode_defunct(text=message), private_key=account.key).signature.to_0x_hex()


async def link(http, stack: ChainStack, user: str, account) -> tuple[int, dict]:
    c = await challenge(http, stack, user)
    body = {"address": account.address, "signature": signed(c["message"], account)}
    async with http.post(stack.url("/api/wallet/link"), json=body, headers=auth(user)) as r:
        return r.status, await r.json()


async def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def credits(http, stack: ChainStack, user: str) -> int:
    async with http.get(stack.url(f"/api/credits/stats/{user}"), headers=auth(user)) as r:
        return (await r.json())["credits"] if r.status == 200 else 0


async def test_link_wallet_with_a_signed_challenge_and_read_balances(chain_stack, http):
    user, account = uid("w"), Account.create()
    await cli(chain_stack, "mint", account.address, "12.5")
    status, body = await link(http, chain_stack, user, account)
    assert status == 201, body
    assert body == {
        "userId": user,
        "address": account.address,
        "linked": True,
        "alreadyLinked": False,
        "unclaimedDeposits": 0,
    }
    async with http.get(chain_stack.url("/api/wallet"), headers=auth(user)) as r:
        wallet = await r.json()
    assert r.status == 200 and wallet["chainAvailable"] is True
    assert [(a["address"], a["balance"], a["balanceBaseUnits"]) for a in wallet["addresses"]] == [
        (account.address, "12.5", str(125 * 10**17))
    ]
    assert wallet["token"]["decimals"] == 18 and wallet["token"]["symbol"] == "BEZ"
    # Linking again with a fresh challenge is idempotent.
    status, body = await link(http, chain_stack, user, account)
    assert status == 200 and body["alreadyLinked"] is True


async def test_link_rejects_bad_signatures_reused_and_missing_challenges(chain_stack, http):
    user, account, intruder = uid("w"), Account.create(), Account.create()
    url, headers = chain_stack.url("/api/wallet/link"), auth(user)

    async def post(body: dict, headers=headers) -> tuple[int, dict]:
        async with http.post(url, json=body, headers=headers) as r:
            return r.status, await r.json()

    status, body = await post({"address": account.address, "signature": "0x" + "ab" * 65})
    assert (status, body["error"]["code"]) == (400, "no_challenge")
    c = await challenge(http, chain_stack, user)
    wrong_key = signed(c["message"], intruder)
    assert (await post({"address": account.address, "signature": wrong_key}))[1]["error"]["code"] == "bad_signature"
    other_text = signed(c["message"] + " ", account)
    assert (await post({"address": account.address, "signature": other_text}))[1]["error"]["code"] == "bad_signature"
    junk = "0x" + "00" * 65
    assert (await post({"address": account.address, "signature": junk}))[1]["error"]["code"] == "bad_signature"
    for bad in (
        {"address": "0x123", "signature": wrong_key},
        {"address": account.address},
        {"address": account.address, "signature": 7},
    ):
        status, body = await post(bad)
        assert (status, body["error"]["code"]) == (400, "bad_request"), bad
    assert (await post({"address": account.address, "signature": wrong_key}, headers={}))[0] == 401

    good = signed(c["message"], account)
    assert (await post({"address": account.address, "signature": good}))[0] == 201
    status, body = await post({"address": account.address, "signature": good})  # the same nonce again
    assert (status, body["error"]["code"]) == (400, "challenge_used")
    status, body = await post({"address": account.address, "signature": good, "nonce": c["nonce"]})
    assert (status, body["error"]["code"]) == (400, "challenge_used")


async def test_expired_challenge_and_an_address_of_another_user(chain_stack, http, pool):
    alice, bob, account = uid("alice"), uid("bob"), Account.create()
    c = await challenge(http, chain_stack, bob)
    await pool.execute(
        "UPDATE wallet_challenges SET expires_at = now() - interval '1 second' WHERE nonce = $1", c["nonce"]
    )
    body = {"address": account.address, "signature": signed(c["message"], account)}
    async with http.post(chain_stack.url("/api/wallet/link"), json=body, headers=auth(bob)) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (400, "challenge_expired")

    assert (await link(http, chain_stack, alice, account))[0] == 201
    status, body = await link(http, chain_stack, bob, account)
    assert (status, body["error"]["code"]) == (409, "address_taken")
    assert await pool.fetchval("SELECT user_id FROM wallet_links WHERE address = $1", account.address.lower()) == alice


async def test_deposit_through_the_cli_becomes_credits_after_confirmations(chain_stack, http, clients):
    user, account = uid("dep"), Account.create()
    key = account.key.to_0x_hex()
    linked = await cli(chain_stack, "link", user, "--key", key, "--url", chain_stack.url(""))
    assert f'"address": "{account.address}"' in linked
    client = ChatClient(user)
    client.sio.on("walletDeposit", client._recorder("walletDeposit"))
    clients.append(client)
    await client.connect(chain_stack.node.port)

    await cli(chain_stack, "mint", account.address, "10")
    out = await cli(chain_stack, "transfer", "2.5", "--key", key)
    assert "sent 2.5 BEZ to the treasury" in out
    await asyncio.sleep(1.0)  # the watcher polls every 0.2 s; without confirmations nothing moves
    assert await credits(http, chain_stack, user) == 0
    await cli(chain_stack, "mine", str(CONFIRMATIONS))
    event = await client.wait_for("walletDeposit")
    assert (event["amount"], event["credits"], event["balance"]) == ("2.5", 2, 2)
    assert await credits(http, chain_stack, user) == 2
    await cli(chain_stack, "transfer", "0.5", "--key", key)
    await cli(chain_stack, "mine", str(CONFIRMATIONS))
    await wait_for(lambda: _equals(credits(http, chain_stack, user), 3), what="3 credits (0.5 + 0.5)")
    async with http.get(chain_stack.url("/api/wallet"), headers=auth(user)) as r:
        wallet = await r.json()
    assert wallet["addresses"][0]["balance"] == "7"
    assert [(d["amount"], d["credits"], d["status"]) for d in wallet["deposits"]] == [
        ("0.5", 1, "credited"),
        ("2.5", 2, "credited"),
    ]
    assert wallet["pendingFraction"] == "0"
    assert (await cli(chain_stack, "balance", account.address)) == "7 BEZ"
    assert [e["credits"] for e in client.events["walletDeposit"]] == [2, 1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.chain",
        "transfer",
        "8",
        "--key",
        key,
        cwd=ROOT,
        env=chain_stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1 and "balance too low" in err.decode()  # a clear error, no traceback


async def test_unlinked_deposit_waits_unclaimed_and_is_credited_when_linked(chain_stack, http, pool):
    user, account = uid("late"), Account.create()
    await cli(chain_stack, "mint", account.address, "5")
    await cli(chain_stack, "transfer", "4", "--key", account.key.to_0x_hex())
    await cli(chain_stack, "mine", str(CONFIRMATIONS))

    async def recorded():
        return await pool.fetchval("SELECT status FROM chain_deposits WHERE from_address = $1", account.address.lower())

    assert await wait_for(recorded, what="the unclaimed deposit") == "unclaimed"
    status, body = await link(http, chain_stack, user, account)
    assert status == 201 and body["unclaimedDeposits"] == 1
    await wait_for(lambda: _equals(credits(http, chain_stack, user), 4), what="the claim")
    assert await recorded() == "credited"


async def test_watcher_killed_and_restarted_loses_and_doubles_nothing(chain_stack, stack_env, http, pool):
    """The chain lives in its own host (--serve-only); the watcher reads it as a real node and is killed."""
    port = str(free_port())
    procs = Processes({**chain_stack.env, "CHAIN_RPC_PORT": port})
    try:
        start_watcher(procs, "--serve-only")
        info = await cli(chain_stack, "info", env=procs.env)
        token, treasury = (line.split()[1] for line in info.splitlines()[1:3])
        real_node = {
            "WEB3_PROVIDER_URL": f"http://127.0.0.1:{port}",
            "BEZ_CONTRACT_ADDRESS": token,
            "TREASURY_ADDRESS": treasury,
        }
        user, account = uid("restart"), Account.create()
        assert (await link(http, chain_stack, user, account))[0] == 201
        await cli(chain_stack, "mint", account.address, "20", env=procs.env)
        key = account.key.to_0x_hex()
        watcher = start_watcher(procs, **real_node)
        for amount in ("1", "2", "3"):
            await cli(chain_stack, "transfer", amount, "--key", key, env=procs.env)
        await cli(chain_stack, "mine", str(CONFIRMATIONS), env=procs.env)
        watcher.kill9()  # whatever it had published or not, its cursor is in PostgreSQL
        for amount in ("4", "5"):
            await cli(chain_stack, "transfer", amount, "--key", key, env=procs.env)
        await cli(chain_stack, "mine", str(CONFIRMATIONS), env=procs.env)
        start_watcher(procs, **real_node)
        await wait_for(lambda: _equals(credits(http, chain_stack, user), 15), what="15 credits")
        await asyncio.sleep(1.0)  # and nothing more arrives
        assert await credits(http, chain_stack, user) == 15
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM chain_deposits WHERE from_address = $1 AND status = 'credited'",
                account.address.lower(),
            )
            == 5
        )
    finally:
        procs.stop_all()


async def test_wallet_needs_a_user_token_and_reports_an_unreachable_chain(chain_stack, stack_env, http):
    async with http.get(chain_stack.url("/api/wallet")) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    procs = Processes({**stack_env, "CHAIN_RPC_PORT": str(free_port())})  # nothing serves this port
    try:
        node = procs.ingress()
        user, account = uid("nochain"), Account.create()
        async with http.post(f"http://127.0.0.1:{node.port}/api/wallet/link/challenge", headers=auth(user)) as r:
            c = await r.json()
        body = {"address": account.address, "signature": signed(c["message"], account)}
        async with http.post(f"http://127.0.0.1:{node.port}/api/wallet/link", json=body, headers=auth(user)) as r:
            assert r.status == 201
        async with http.get(f"http://127.0.0.1:{node.port}/api/wallet", headers=auth(user)) as r:
            wallet = await r.json()
        assert r.status == 200 and wallet["chainAvailable"] is False and wallet["chainError"]
        assert [(a["address"], a["balance"]) for a in wallet["addresses"]] == [(account.address, None)]
    finally:
        procs.stop_all()


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_a_live_dev_chain_confirms_a_deposit_on_its_own(chain_stack, http):
    """What a new user sees with scripts/up.sh: blocks keep coming, so a transfer simply becomes credits."""
    port = str(free_port())
    procs = Processes({**chain_stack.env, "CHAIN_RPC_PORT": port, "CHAIN_BLOCK_TIME_S": "0.3"})
    try:
        start_watcher(procs)
        user, account = uid("live"), Account.create()
        key = account.key.to_0x_hex()
        await cli(chain_stack, "link", user, "--key", key, "--url", chain_stack.url(""))
        await cli(chain_stack, "mint", account.address, "100", env=procs.env)
        await cli(chain_stack, "transfer", "12.5", "--key", key, env=procs.env)
        await wait_for(lambda: _equals(credits(http, chain_stack, user), 12), what="12 credits")
        async with http.get(chain_stack.url("/api/wallet"), headers=auth(user)) as r:
            assert (await r.json())["pendingFraction"] == "0.5"
    finally:
        procs.stop_all()
