"""Socket.IO event handlers: authenticate, validate, rate-limit, then publish or fan out.

No business rule lives here: charging, storing and delivering happen in the
chat workers. Rooms are namespaced (``r/<roomId>``, ``u/<userId>``) so a client
can never join another user's private channel by picking a room name.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import socketio
import structlog
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.channels import conversation_room_tenant
from domain.errors import DomainError
from domain.rate_limits import parse_rate_limits
from domain.rooms import resolve_join, validate_room_id
from infra import messages
from infra.logging import log_scope
from infra.publisher import BrokerUnavailable, CommandPublisher, PublishFailed, PublishUnconfirmed
from infra.settings import Settings
from infra.stats_counter import StatsCounter
from ingress.auth import Identity, Unauthorized, decode_token
from ingress.calls import CallSockets
from ingress.chat_backlog import ChatBacklog
from ingress.connection_caps import ConnectionCaps
from ingress.correlation import bind_command
from ingress.event_gates import Coalescer, TypingGate
from ingress.loop_lag import LoopLag
from ingress.metrics import IngressMetrics
from ingress.presence import Presence
from ingress.proxies import environ_client_ip
from ingress.rate_limiter import LocalWindows, RateDecision, RateLimiter
from ingress.rejections import Rejected, check_allowed, overloaded, unavailable, unconfirmed
from ingress.room_sequencer import RoomSequencer
from ingress.send_flusher import PartitionedSends
from ingress.session_guard import SessionGuard
from ingress.socket_server import AckAwareServer, ack_requested
from ingress.tips import tip_command
from schemas import commands, queues
from schemas.base import Command
from schemas.channel_events import TakeOver
from schemas.channels import room_channel, tenant_channel, user_channel
from schemas.socket_events import JoinRoom, MarkRead, RoomRef, SendMessage
from schemas.tips import SendTip

log = structlog.get_logger(__name__)

# Logged at debug: a flood or an outage refuses every event, one line each.
QUIET_REJECTIONS = frozenset({"rate_limited", "overloaded", "unavailable"})


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


Handler = Callable[..., Awaitable[dict[str, Any] | None]]


class ChatSockets:
    """Binds the chat protocol's events to one AsyncServer."""

    def __init__(
        self,
        sio: AckAwareServer,
        settings: Settings,
        presence: Presence,
        publisher: CommandPublisher,
        limiter: RateLimiter,
        redis: Redis,
        pool: asyncpg.Pool,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self.sio = sio
        self.metrics = metrics or IngressMetrics()
        self.settings = settings
        self.presence = presence
        self.publisher = publisher
        self.limiter = limiter
        self.redis = redis
        self.pool = pool
        # Room messages reach each socket once, in seq order; gaps are read back (ingress/room_sequencer.py).
        self.sequencer = RoomSequencer(self._stored_between)
        sio.manager.room_gate = self.sequencer
        # How far behind the chat workers are; past CHAT_BACKLOG_MAX_MS sends are refused (overloaded).
        self.backlog = ChatBacklog(settings.chat_backlog_max_ms / 1000)
        sio.manager.applied_hook = self.backlog.applied
        sio.manager.interrupted_hook = self.backlog.interrupted
        self.metrics.watch_backlog(self.backlog.delay_s, lambda: self.backlog.waiting)
        # How late this node's own event loop runs; past SEND_MAX_LOOP_LAG_MS sends are refused (overloaded).
        self.loop_lag = LoopLag()
        self.metrics.watch_loop_lag(lambda: self.loop_lag.lag_s)
        self._secret = settings.jwt_secret.get_secret_value()
        self.sends = PartitionedSends(  # drain() before publisher.close()
            publisher, limiter, settings.send_batch_max, max_in_flight=settings.send_max_in_flight
        )
        self.accepted = StatsCounter(redis, settings.key("stats", "accepted"))  # close() before redis.aclose()
        self._init_limits(settings)
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        handlers: dict[str, tuple[Handler, type[BaseModel]]] = {
            "joinRoom": (self.join_room, JoinRoom),
            "leaveRoom": (self.leave_room, RoomRef),
            "sendMessage": (self.send_message, SendMessage),
            "typing-start": (functools.partial(self.typing, typing=True), RoomRef),
            "typing-stop": (functools.partial(self.typing, typing=False), RoomRef),
            "mark-read": (self.mark_read, MarkRead),
            "sendTip": (self.send_tip, SendTip),
            "takeOverConversation": (self.take_over, TakeOver),
        }
        for event, (handler, schema) in handlers.items():
            sio.on(event, self._guarded(event, handler, schema))
        self.calls = CallSockets.create(sio, settings, publisher, redis)  # seed 003 call signaling + meter
        for event, (handler, schema) in self.calls.handlers().items():
            sio.on(event, self._guarded(event, handler, schema))

    def _init_limits(self, s: Settings) -> None:
        """The bounds of issue 12 (docs/security.md): every one a setting of "socket events"."""
        ip_of = functools.partial(environ_client_ip, trusted=s.trusted_proxy_networks)
        self._ip_of = ip_of
        self.sio.guard = SessionGuard(s.socket_auth_timeout_s, s.socket_max_per_ip, ip_of, self.sio.close_session)
        self.caps = ConnectionCaps(s.socket_max_per_user, s.socket_max_per_ip)
        self._socket_joins = LocalWindows(parse_rate_limits(s.socket_join_limits))
        self._user_joins = RateLimiter(self.redis, f"{s.key_prefix}:join", parse_rate_limits(s.user_join_limits))
        self._read_lookups = LocalWindows(parse_rate_limits(s.read_mark_limits))
        self._rooms_of: dict[str, set[str]] = {}  # sid -> rooms it joined (the cap, re-joins)
        self.typing_gate: TypingGate[tuple[str, str]] = TypingGate(s.typing_interval_ms / 1000, self._typing_sent)
        self.read_marks: Coalescer[tuple[str, str], tuple[int, str]] = Coalescer(
            s.read_mark_interval_ms / 1000, self._store_read_mark, max
        )

    # --- plumbing ---------------------------------------------------------------
    def _guarded(self, event: str, handler: Handler, schema: type[BaseModel]) -> Callable[..., Awaitable[Any]]:
        """Validate the payload and turn every failure into a clear error for the sender only."""

        async def run(sid: str, data: Any = None, *_: Any) -> dict[str, Any] | None:
            self.metrics.event(event)
            started = time.perf_counter()
            with log_scope(socket_event=event, sid=sid):  # and user_id, command_id once known
                result = await attempt(sid, data)
            status = result.get("status", "ok") if isinstance(result, dict) else "ok"
            self.metrics.acked(event, str(status), time.perf_counter() - started)
            return result

        async def attempt(sid: str, data: Any) -> dict[str, Any] | None:
            try:
                payload = schema.model_validate(data if data is not None else {})
                identity = await self._identity(sid)
                structlog.contextvars.bind_contextvars(user_id=identity.user_id)
                return await handler(sid, identity, payload)
            except ValidationError as exc:
                return await self._reject(sid, event, "bad_request", _validation_message(exc))
            except DomainError as exc:
                return await self._reject(sid, event, exc.code, str(exc))
            except Rejected as exc:
                return await self._reject(sid, event, exc.code, exc.message, **exc.extra)
            except RedisError as exc:  # an outage: the sender may retry; no traceback per event
                log.warning("socket.redis_unavailable", event_name=event, sid=sid, error=repr(exc))
                refusal = unavailable("Redis", consequence=None)
                return await self._reject(sid, event, refusal.code, refusal.message, **refusal.extra)
            except Exception:
                log.exception("socket.handler_failed", event_name=event, sid=sid)
                return await self._reject(sid, event, "internal", "internal error; nothing was charged")

        return run

    async def _reject(self, sid: str, event: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
        error = {"code": code, "message": message}
        self.metrics.rejected("socket", code)
        # A flooding client is rate limited on every event, an overloaded node refuses every send: debug.
        (log.debug if code in QUIET_REJECTIONS else log.info)("socket.rejected", code=code, reason=message)
        if not ack_requested.get():
            await self.sio.emit("error", {**error, "event": event, **extra}, to=sid)
        return {"status": "rejected", "error": error, **extra}

    async def _identity(self, sid: str) -> Identity:
        session = await self.sio.get_session(sid)
        return session["identity"]

    def _require_member(self, sid: str, room_id: str) -> None:
        validate_room_id(room_id)
        if not self.presence.is_member(sid, room_id):
            raise Rejected("bad_request", f"unknown room {room_id!r}: join it first")

    # --- connection -------------------------------------------------------------
    async def connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            identity = decode_token(token, self._secret, leeway_s=self.settings.jwt_leeway_s)
        except Unauthorized as exc:
            log.info("socket.unauthorized", reason=str(exc))
            self.metrics.rejected("socket", "unauthorized")
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        self._admit(sid, identity, environ)
        try:
            await self._connected(sid, identity)
        except BaseException:
            self.caps.release(sid)
            raise

    def _admit(self, sid: str, identity: Identity, environ: dict) -> None:
        """Count the connection against its user's and IP's caps, or refuse it (connect_error)."""
        refusal = self.caps.admit(sid, identity.user_id, self._ip_of(environ))
        if refusal is None:
            return
        log.info("socket.refused", reason="too_many_connections", scope=refusal.scope, limit=refusal.limit)
        self.metrics.rejected("socket", "too_many_connections")
        raise socketio.exceptions.ConnectionRefusedError(
            "too_many_connections",
            {
                "code": "too_many_connections",
                "scope": refusal.scope,
                "limit": refusal.limit,
                "message": f"at most {refusal.limit} connections per {refusal.scope}; close one first",
            },
        )

    async def _connected(self, sid: str, identity: Identity) -> None:
        await self.sio.save_session(sid, {"identity": identity})
        await self.sio.enter_room(sid, user_channel(identity.user_id))
        if identity.operator_of:
            await self.sio.enter_room(sid, tenant_channel(identity.operator_of))
        self.presence.connected(sid)
        await self.calls.connected(sid, identity)
        self.metrics.connected()
        log.info("socket.connected", sid=sid, user_id=identity.user_id)

    async def disconnect(self, sid: str, *_: Any) -> None:
        self._forget_socket(sid)  # this node's limits first: they need no network
        # Never fails and never waits for Redis: presence and the call registry forget the socket in
        # memory now and update Redis in the background (batched, retried; ingress/presence.py).
        try:
            session = await self.sio.get_session(sid)
        except KeyError:
            session = {}
        identity: Identity | None = session.get("identity")
        rooms = self.presence.disconnected(sid)
        if identity is None:
            return
        self.metrics.disconnected()
        self.calls.disconnected(sid, identity)
        for room_id in rooms:
            try:
                await self._announce_left(sid, identity, room_id)
            except Exception as exc:  # a lost userLeft is not worth a failed disconnect
                log.warning("socket.announce_left_failed", room_id=room_id, error=repr(exc))

    def _forget_socket(self, sid: str) -> None:
        user_id = self.caps.release(sid)
        self.sequencer.cursors.forget(sid)
        self._socket_joins.forget(sid)
        self._read_lookups.forget(sid)
        for room_id in self._rooms_of.pop(sid, ()):
            if user_id is not None:
                self.typing_gate.forget((room_id, user_id))  # no typing shown after the user left

    # --- rooms ------------------------------------------------------------------
    async def join_room(self, sid: str, who: Identity, payload: JoinRoom) -> dict[str, Any]:
        room_type = resolve_join(
            payload.roomId, payload.roomType, who.user_id, operator_of=who.operator_of, is_admin=who.is_admin
        )
        rooms = self._rooms_of.setdefault(sid, set())
        if payload.roomId in rooms:
            return await self._rejoined(sid, payload, room_type.value)
        if len(rooms) >= self.settings.socket_max_rooms:
            limit = self.settings.socket_max_rooms
            raise Rejected(
                "too_many_rooms", f"a connection can be in at most {limit} rooms; leave one first", limit=limit
            )
        self._limited(self._socket_joins.hit(sid), "joins on this connection")
        rooms.add(payload.roomId)  # before any await: concurrent joins see it (and the cap)
        try:
            self._limited(await self._user_joins.hit(who.user_id, str(uuid.uuid4())), "joins")
            # Up to the room's last seq now, its messages come in roomJoined's history; after it, live.
            last_seq = await messages.last_seq(self.pool, payload.roomId)
            self.sequencer.cursors.joined(sid, payload.roomId, last_seq)
            await self.sio.enter_room(sid, room_channel(payload.roomId))
            member_count = await self.presence.joined(sid, who.user_id, payload.roomId)
        except BaseException:
            rooms.discard(payload.roomId)
            self.sequencer.cursors.left(sid, payload.roomId)
            raise
        history = await self._history(payload.roomId, payload.sinceSeq, last_seq)
        joined = {"roomId": payload.roomId, "roomType": room_type.value, "memberCount": member_count}
        await self.sio.emit("roomJoined", {**joined, **history}, to=sid)
        await self.sio.emit(
            "userJoined",
            {"roomId": payload.roomId, "userId": who.user_id, "username": who.name},
            room=room_channel(payload.roomId),
            skip_sid=sid,
        )
        return {"status": "accepted", "roomId": payload.roomId}

    async def _rejoined(self, sid: str, payload: JoinRoom, room_type: str) -> dict[str, Any]:
        """A join of a room this socket is in: nobody told; still rate-limited. No history again,
        unless it asks to catch up (``sinceSeq``)."""
        self._limited(self._socket_joins.hit(sid), "joins on this connection")
        room_id = payload.roomId
        member_count = await self.presence.member_count(room_id)
        have = self.sequencer.cursors.get(sid, room_id) or 0  # what it was sent of the room so far
        if payload.sinceSeq is None:
            history = {"history": [], "lastSeq": have}
        else:
            history = await self._history(room_id, payload.sinceSeq, have)
        joined = {"roomId": room_id, "roomType": room_type, "memberCount": member_count, **history}
        await self.sio.emit("roomJoined", {**joined, "alreadyJoined": True}, to=sid)
        return {"status": "accepted", "roomId": room_id, "alreadyJoined": True}

    @staticmethod
    def _limited(decision: RateDecision, what: str) -> None:
        check_allowed(decision, f"too many {what}")

    async def _history(self, room_id: str, since_seq: int | None, last_seq: int) -> dict[str, Any]:
        """``roomJoined``'s history up to ``last_seq`` (later messages come live), and ``lastSeq``.

        Without ``since_seq``: the room's latest messages; in a conversation, each message sent to
        the contact carries its last known ``deliveryStatus`` (later changes arrive as
        ``messageStatus``). With it: the first page of every message after it, and ``hasMore``
        (the rest, up to ``lastSeq``, from GET /api/rooms/{roomId}/messages).
        """
        if since_seq is not None:
            page = await messages.page(
                self.pool, room_id, after_seq=since_seq, before_seq=last_seq + 1, limit=self.settings.history_page_max
            )
            return {"history": page.payloads, "lastSeq": last_seq, "hasMore": page.has_more}
        limit, upto = self.settings.history_size, last_seq + 1
        if conversation_room_tenant(room_id):
            recent = await messages.recent_with_delivery(self.pool, room_id, limit, before_seq=upto)
            history = [{**payload, "deliveryStatus": status} if status else payload for payload, status in recent]
        else:
            history = await messages.recent_payloads(self.pool, room_id, limit, before_seq=upto)
        return {"history": history, "lastSeq": last_seq}

    async def _stored_between(self, room_id: str, after: int, before: int, limit: int) -> list[dict[str, Any]]:
        """The room's stored messages after ``after`` (and before ``before``, if not 0), in seq order."""
        page = await messages.page(
            self.pool, room_id, after_seq=after, before_seq=before or None, limit=limit, with_last_seq=False
        )
        return page.payloads

    async def leave_room(self, sid: str, who: Identity, payload: RoomRef) -> dict[str, Any]:
        self._require_member(sid, payload.roomId)
        self._rooms_of.get(sid, set()).discard(payload.roomId)
        self.sequencer.cursors.left(sid, payload.roomId)
        self.typing_gate.forget((payload.roomId, who.user_id))
        await self.presence.left(sid, payload.roomId)
        await self.sio.leave_room(sid, room_channel(payload.roomId))
        await self.sio.emit("roomLeft", {"roomId": payload.roomId}, to=sid)
        await self._announce_left(sid, who, payload.roomId)
        return {"status": "accepted", "roomId": payload.roomId}

    async def _announce_left(self, sid: str, who: Identity, room_id: str) -> None:
        await self.sio.emit(
            "userLeft",
            {"roomId": room_id, "userId": who.user_id, "username": who.name},
            room=room_channel(room_id),
            skip_sid=sid,
        )

    # --- messages ---------------------------------------------------------------
    def _refuse_if_behind(self) -> None:
        """``overloaded`` while this node's event loop runs later than SEND_MAX_LOOP_LAG_MS."""
        bound_ms = self.settings.send_max_loop_lag_ms
        lag_ms = round(self.loop_lag.lag_s * 1000)
        if bound_ms and lag_ms > bound_ms:
            raise overloaded(f"this node is {lag_ms} ms behind", min(5_000, max(100, 2 * lag_ms)))

    async def _rate_limit(self, who: Identity) -> None:
        try:
            decision = await self.limiter.hit(who.user_id, str(uuid.uuid4()))
        except RedisError:  # fail closed: nothing is published unless the limits were checked
            raise unavailable("Redis (rate limiting)") from None
        check_allowed(decision, "too many messages")

    async def _publish(self, actor: str, command: Command) -> None:
        bind_command(command)
        try:
            await self.publisher.publish(queues.CHAT_QUEUE, actor, command)
        except BrokerUnavailable:
            raise unavailable("RabbitMQ", "nothing was sent") from None
        except PublishUnconfirmed:
            if isinstance(command, commands.OperatorReply):
                raise unconfirmed(command.client_message_id, command.message_id) from None
            # A read mark's id is its message's; a takeover is a state to reach: both may be retried.
            raise Rejected("unconfirmed", "sent to the queue but not confirmed: it may still apply; retry") from None
        except PublishFailed:
            raise Rejected("internal", "the message could not be queued; nothing was charged, retry") from None

    async def send_message(self, sid: str, who: Identity, payload: SendMessage) -> dict[str, Any]:
        self._require_member(sid, payload.roomId)
        self._refuse_if_behind()
        tenant = conversation_room_tenant(payload.roomId)
        if tenant:  # a chat send is rate-limited by its flush, with the other sends of its batch
            await self._rate_limit(who)
        command_id, message_id = commands.send_command_ids(who.user_id, payload.clientMessageId)
        now_ms = int(time.time() * 1000)
        if tenant:  # a human handoff: the operator's reply goes out to the contact, published alone
            command: Command = commands.OperatorReply(
                command_id=command_id,
                message_id=message_id,
                tenant_id=tenant,
                conversation_id=payload.roomId.rsplit(":", 1)[1],
                operator_id=who.user_id,
                operator_name=who.name,
                text=payload.message,
                client_message_id=payload.clientMessageId,
                accepted_at_ms=now_ms,
            )
            await self._publish(queues.OPERATOR_REPLY_ACTOR, command)
        else:
            command = commands.SendChatMessage(
                command_id=command_id,
                message_id=message_id,
                user_id=who.user_id,
                username=who.name,
                room_id=payload.roomId,
                message=payload.message,
                client_message_id=payload.clientMessageId,
                accepted_at_ms=now_ms,
            )
            bind_command(command)
            if self.settings.chat_backlog_max_ms:
                self.backlog.check()  # the workers are too far behind: refused, nothing published
            self.backlog.published(message_id)
            try:
                await self.sends.send(command)  # rate limit, publish and confirm in this node's next flush
            except Rejected as exc:
                if exc.code != "unconfirmed":  # certainly not published: nothing will answer it
                    self.backlog.withdrawn(message_id)
                raise
        self.accepted.add()  # a statistic, added to Redis about once a second
        log.debug("message.accepted", command_id=command_id, room_id=payload.roomId, user_id=who.user_id)
        return {"status": "accepted", "messageId": message_id, "clientMessageId": payload.clientMessageId}

    async def typing(self, sid: str, who: Identity, payload: RoomRef, *, typing: bool) -> dict[str, Any]:
        """Coalesced per room and user (``TYPING_INTERVAL_MS``): what is not broadcast is dropped silently."""
        self._require_member(sid, payload.roomId)
        if self.typing_gate.offer((payload.roomId, who.user_id), typing, who.name):
            await self._emit_typing(payload.roomId, who.user_id, who.name, typing, skip_sid=sid)
        return {"status": "accepted"}

    async def _emit_typing(self, room_id: str, user_id: str, name: str, typing: bool, skip_sid: str | None) -> None:
        await self.sio.emit(
            "userTyping",
            {"roomId": room_id, "userId": user_id, "username": name, "typing": typing},
            room=room_channel(room_id),
            skip_sid=skip_sid,
        )

    async def _typing_sent(self, key: tuple[str, str], typing: bool, name: str) -> None:
        """A start held back by the gate, sent when its interval ended (the user's own sockets get it too)."""
        room_id, user_id = key
        await self._emit_typing(room_id, user_id, name, typing, skip_sid=None)

    async def mark_read(self, sid: str, who: Identity, payload: MarkRead) -> dict[str, Any]:
        """Only a message of that room; at most one stored mark per room and user per
        ``READ_MARK_INTERVAL_MS``: marks made meanwhile are folded into the newest one, stored when it ends."""
        self._require_member(sid, payload.roomId)
        try:
            message_id = str(uuid.UUID(payload.messageId))
        except ValueError:
            raise Rejected("bad_request", "messageId: not a message id") from None
        self._limited(self._read_lookups.hit(sid), "read marks on this connection")
        seq = await messages.message_seq(self.pool, payload.roomId, uuid.UUID(message_id))
        if seq is None:
            raise Rejected("not_found", f"no message {message_id} in room {payload.roomId}")
        key = (who.user_id, payload.roomId)
        if self.read_marks.offer(key, (seq, message_id)):
            try:
                await self._store_read_mark(key, (seq, message_id))
            except BaseException:
                self.read_marks.release(key)
                raise
        return {"status": "accepted"}

    async def _store_read_mark(self, key: tuple[str, str], mark: tuple[int, str]) -> None:
        (user_id, room_id), (_, message_id) = key, mark
        command = commands.MarkMessageRead(
            command_id=commands.mark_read_command_id(user_id, room_id, message_id),
            user_id=user_id,
            room_id=room_id,
            message_id=message_id,
        )
        await self._publish(queues.MARK_READ_ACTOR, command)

    # --- conversations --------------------------------------------------------------
    async def take_over(self, sid: str, who: Identity, payload: TakeOver) -> dict[str, Any]:
        """Queue a takeover (or hand-back) on ``chat``; the worker announces ``conversationUpdated``."""
        if not conversation_room_tenant(payload.roomId):
            raise Rejected("bad_request", "roomId: a conversation room is named conv:<tenant>:<conversation>")
        resolve_join(payload.roomId, None, who.user_id, operator_of=who.operator_of, is_admin=who.is_admin)
        await self._rate_limit(who)
        _, tenant, conversation_id = payload.roomId.split(":")
        request = payload.requestId or str(uuid.uuid4())
        command = commands.ConversationTakeover(
            command_id=commands.takeover_command_id(who.user_id, request),
            tenant_id=tenant,
            conversation_id=conversation_id,
            operator_id=who.user_id,
            operator_name=who.name,
            release=payload.release,
            admin=who.is_admin,
            requested_at_ms=int(time.time() * 1000),
        )
        await self._publish(queues.TAKEOVER_ACTOR, command)
        log.info("takeover.accepted", command_id=command.command_id, room_id=payload.roomId, release=payload.release)
        return {"status": "accepted", "roomId": payload.roomId, "release": payload.release}

    # --- tips -------------------------------------------------------------------
    async def send_tip(self, sid: str, who: Identity, payload: SendTip) -> dict[str, Any]:
        """Queue a tip on ``billing``; the ack means RabbitMQ holds it, the worker moves the credits."""
        if payload.roomId is not None:
            self._require_member(sid, payload.roomId)
        command = tip_command(who, payload, self.settings.tip_max_credits)
        bind_command(command)
        await self._rate_limit(who)
        try:
            await self.publisher.publish(queues.BILLING_QUEUE, queues.SEND_TIP_ACTOR, command)
        except BrokerUnavailable:
            raise unavailable("RabbitMQ", "no credits moved") from None
        except PublishUnconfirmed:
            message = (
                "the tip was sent to the queue but not confirmed, so the credits may still move; "
                "retry with the same clientTipId: they move once"
            )
            raise Rejected("unconfirmed", message, tipId=command.tip_id) from None
        except PublishFailed:
            raise Rejected("internal", "the tip could not be queued; no credits moved, retry") from None
        log.info("tip.accepted", command_id=command.command_id, user_id=who.user_id, to_user_id=payload.toUserId)
        return {"status": "accepted", "tipId": command.tip_id, "clientTipId": payload.clientTipId}
