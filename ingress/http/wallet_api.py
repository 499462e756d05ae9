"""Wallet routes: link an address by signing a challenge (EIP-191), list addresses with BEZ balances.

``POST /api/wallet/link/challenge`` stores a single-use nonce that expires after
``WALLET_CHALLENGE_TTL_S``; ``POST /api/wallet/link {address, signature, nonce?}`` recovers the
signer of that challenge's message with eth-account and links the address to the caller.
An address belongs to one user. Deposits an address made before it was linked are credited by
the chain watcher, which publishes a claim for each of them once the link exists.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from web3 import AsyncWeb3

from domain.chain import format_units
from infra import chain, wallets
from infra.chain import ChainInfo, ChainUnavailable
from infra.settings import Settings
from ingress import auth
from ingress.auth import Identity
from ingress.http.api_docs import JWT, documented
from ingress.http.errors import BadRequest, Conflict, TooManyRequests, Unauthorized
from ingress.http.http_api import bearer_identity, parse_body
from ingress.state import APP_STATE
from schemas.chain import LinkWallet

wallet_routes = web.RouteTableDef()
LINKED = {201: "Linked, with the deposits it made before", 200: "Linked to the caller already"}
INFO_TTL_S = 10.0  # the embedded chain gets a new token when its host restarts


@dataclass(slots=True)
class ChainClient:
    w3: AsyncWeb3
    settings: Settings
    _info: ChainInfo | None = None
    _info_at: float = 0.0

    async def info(self) -> ChainInfo:
        if self._info is None or time.monotonic() - self._info_at > INFO_TTL_S:
            self._info = await chain.resolve(self.w3, self.settings)
            self._info_at = time.monotonic()
        return self._info

    def forget(self) -> None:
        self._info = None


CHAIN_CLIENT = web.AppKey("chain_client", ChainClient)


def chain_client_context(
    settings: Settings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context owning the node's JSON-RPC client; it connects on first use."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        client = ChainClient(chain.connect(settings), settings)
        app[CHAIN_CLIENT] = client
        yield
        await client.w3.provider.disconnect()

    return context


def _caller(request: web.Request) -> Identity:
    try:
        return bearer_identity(request)
    except auth.Unauthorized as exc:
        raise Unauthorized(f"a user Bearer JWT is required: {exc}") from None


def challenge_message(user_id: str, nonce: str, issued: datetime, expires: datetime) -> str:
    return (
        "Gatekeeper asks you to link this wallet to your account.\n\n"
        f"User: {user_id}\nNonce: {nonce}\n"
        f"Issued At: {issued.isoformat(timespec='seconds')}\nExpiration Time: {expires.isoformat(timespec='seconds')}"
    )


@wallet_routes.post("/api/wallet/link/challenge")
@documented({201: "The nonce, the message to sign, and its expiry"}, Unauthorized, TooManyRequests, auth=JWT)
async def link_challenge(request: web.Request) -> web.Response:
    """A single-use message for the caller to sign with the wallet to link (EIP-191)."""
    who = _caller(request)
    state = request.app[APP_STATE]
    nonce = secrets.token_hex(16)
    issued = datetime.now(UTC).replace(microsecond=0)
    expires = issued + timedelta(seconds=state.settings.wallet_challenge_ttl_s)
    message = challenge_message(who.user_id, nonce, issued, expires)
    cap = state.settings.wallet_max_challenges
    async with state.pool.acquire() as conn, conn.transaction():
        live = await wallets.live_challenges(conn, who.user_id)  # one user's requests in turn: the cap holds
        if live.count >= cap:
            raise TooManyRequests(f"at most {cap} unexpired challenges per user: use one or wait", live.retry_s or 1)
        await wallets.store_challenge(conn, nonce, who.user_id, message, expires)
    return web.json_response(
        {"nonce": nonce, "message": message, "expiresAt": expires.isoformat(timespec="seconds")}, status=201
    )


def _signer(message: str, signature: str) -> str | None:
    try:
        return Account.recover_message(encode_defunct(text=message), signature=signature).lower()
    except Exception:  # malformed r/s/v: the same answer as a wrong key
        return None


@wallet_routes.post("/api/wallet/link")
@documented(LINKED, BadRequest, Unauthorized, Conflict, auth=JWT, body=LinkWallet)
async def link_wallet(request: web.Request) -> web.Response:
    """Link the address that signed a challenge to the caller; an address belongs to one user."""
    who = _caller(request)
    body: LinkWallet = await parse_body(request, LinkWallet)
    address = body.address.lower()
    state = request.app[APP_STATE]
    async with state.pool.acquire() as conn, conn.transaction():
        challenge = await wallets.challenge_to_sign(conn, who.user_id, body.nonce)
        if challenge is None:
            raise BadRequest("ask POST /api/wallet/link/challenge for a message to sign first", code="no_challenge")
        if challenge.used:
            raise BadRequest("this challenge was already used; ask for a new one", code="challenge_used")
        if challenge.expired:
            raise BadRequest("this challenge has expired; ask for a new one", code="challenge_expired")
        if _signer(challenge.message, body.signature) != address:
            raise BadRequest("the signature is not the challenge signed by that address", code="bad_signature")
        await wallets.use_challenge(conn, challenge.nonce)
        created, owner = await wallets.link(conn, address, who.user_id)
        if owner != who.user_id:
            # Rolls back the challenge's use too: the caller may retry with another address.
            raise Conflict("this address is linked to another user", code="address_taken")
        unclaimed = await wallets.unclaimed_deposits(conn, address)
    body_out = {
        "userId": who.user_id,
        "address": to_checksum_address(address),
        "linked": True,
        "alreadyLinked": not created,
        "unclaimedDeposits": unclaimed,
    }
    return web.json_response(body_out, status=201 if created else 200)


@wallet_routes.get("/api/wallet")
@documented({200: "Linked addresses, BEZ balances and recent deposits"}, Unauthorized, auth=JWT)
async def wallet(request: web.Request) -> web.Response:
    """The caller's linked addresses with their BEZ balances (when the chain answers) and deposits."""
    who = _caller(request)
    state = request.app[APP_STATE]
    async with state.pool.acquire() as conn:
        links = await wallets.links(conn, who.user_id)
        carry = await wallets.pending_fraction(conn, who.user_id)
        deposits = await wallets.recent_deposits(conn, who.user_id, [link.address for link in links])
    client = request.app[CHAIN_CLIENT]
    out: dict[str, Any] = {"userId": who.user_id, "chainAvailable": True}
    balances: dict[str, int | None] = {link.address: None for link in links}
    try:
        info = await client.info()
        for address in balances:
            balances[address] = await chain.balance_of(client.w3, info, address)
        out["token"] = {"address": info.token, "symbol": "BEZ", "decimals": info.decimals, "chainId": info.chain_id}
        out["treasury"] = info.treasury
        decimals = info.decimals
    except Exception as exc:  # node down, timeout, an error answer: still list the links, say why
        client.forget()
        error = str(exc) if isinstance(exc, ChainUnavailable) else f"{type(exc).__name__}: {exc}"
        out.update(chainAvailable=False, chainError=error[:300], token=None, treasury=None)
        decimals = deposits[0].decimals if deposits else 18
    out["addresses"] = [
        {
            "address": to_checksum_address(link.address),
            "linkedAt": link.linked_at.isoformat(),
            "balance": None if (balance := balances[link.address]) is None else format_units(balance, decimals),
            "balanceBaseUnits": None if balance is None else str(balance),
        }
        for link in links
    ]
    out["pendingFraction"] = format_units(carry, decimals)  # BEZ deposited below one whole credit
    out["deposits"] = [
        {
            "txHash": d.tx_hash,
            "logIndex": d.log_index,
            "blockNumber": d.block_number,
            "from": to_checksum_address(d.from_address),
            "amount": format_units(d.amount, d.decimals),
            "status": d.status,
            "credits": d.credits,
        }
        for d in deposits
    ]
    return web.json_response(out)
