"""Queues at a glance: depth, rates and dead letters per capability, from RabbitMQ itself.

One row per capability (``chat``, ``outbound``, ``ai``, ``billing``, ``chain``), folding in its
work queues (chat's: ``chat`` and its partitions ``chat.p0``...), their delay queues
(``<queue>.DQ``: retries waiting for their backoff) and their dead-letter queues (``<queue>.XQ``).
Both sources list every queue of the vhost, so partitions count as soon as they are declared. Used
by ``python -m scripts.status`` and the admin console.

Two sources, tried in order:

1. RabbitMQ's management HTTP API (``RABBITMQ_MANAGEMENT_URL``, or derived from ``AMQP_URL``):
   counts, consumers, publish/ack rates averaged over the last minute, and the age of the oldest
   ready message (``head_message_timestamp``: the AMQP ``timestamp`` property of the queue's
   head, which our publishers set). Its figures are the broker's statistics, refreshed every 5 s.
2. ``rabbitmqctl list_queues`` on the broker host (root, or the broker's user): current counts,
   consumers and the head's timestamp, but no rates.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import shutil
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
from dramatiq.common import dq_name, xq_name
from pydantic import BaseModel, ConfigDict

from infra.amqp import amqp_urls
from infra.settings import Settings
from schemas.queues import ALL_QUEUES, queues_of

RATE_WINDOW_S = 60  # rates are averaged over the management API's samples of the last minute
RATE_SAMPLE_S = 5  # the broker's statistics interval (collect_statistics_interval, 5 s by default)
HTTP_TIMEOUT_S = 5.0
CTL_TIMEOUT_S = 30.0
_API_COLUMNS = (
    "name,state,type,messages_ready,messages_unacknowledged,consumers,head_message_timestamp,"
    "message_stats.publish_details.avg_rate,message_stats.ack_details.avg_rate,"
    "message_stats.deliver_get_details.avg_rate"
)
_CTL_ITEMS = (
    "name",
    "state",
    "type",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "head_message_timestamp",
)

Source = Literal["management", "rabbitmqctl"]


class QueueRow(BaseModel):
    """One capability's queues. Rates are None when the source has none (rabbitmqctl); the oldest
    age is None when no message is ready or the head message carries no timestamp."""

    model_config = ConfigDict(frozen=True)

    queue: str
    state: str  # RabbitMQ's (running, idle, crashed, minority, ...), or "absent": never declared
    queue_type: str | None  # classic or quorum
    ready: int  # waiting for a worker (summed over the capability's work queues, as are the counts below)
    unacked: int  # delivered to a worker (prefetched or being processed), not acked yet
    delayed: int  # <queue>.DQ: retries and delayed messages waiting for their time
    dead: int  # <queue>.XQ: dead letters (python -m scripts.dlq)
    consumers: int  # of the busiest work queue: each process of a pool consumes every one of them
    in_rate: float | None  # messages/s published into the work queue (new commands and retries that came due)
    out_rate: float | None  # messages/s acked from the work queue (done, or handed over to a retry)
    deliver_rate: float | None  # messages/s delivered to workers (redeliveries included)
    oldest_age_s: float | None  # age of the oldest ready message, from its timestamp property


class QueueStats(BaseModel):
    source: Source
    vhost: str
    endpoint: str  # where the figures came from, without credentials
    collected_at: dt.datetime
    rate_window_s: int | None  # None: the source has no rates
    fallback_reason: str | None = None  # why the management API was not used
    rows: list[QueueRow]


class QueueStatsUnavailable(Exception):
    """Neither the management API nor rabbitmqctl answered."""


class VhostNotFound(QueueStatsUnavailable):
    """The management API does not know AMQP_URL's vhost: a configuration error, not an outage."""


@dataclass(frozen=True)
class _Raw:
    """What a source says about one RabbitMQ queue."""

    state: str
    queue_type: str | None
    ready: int
    unacked: int
    consumers: int
    head_timestamp: int | None  # seconds since the epoch (AMQP timestamps have one-second resolution)
    publish_rate: float | None = None
    ack_rate: float | None = None
    deliver_rate: float | None = None


@dataclass(frozen=True)
class ManagementEndpoint:
    url: str  # base URL without credentials, e.g. http://127.0.0.1:15672
    user: str
    password: str

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


def vhost_of(amqp_url: str) -> str:
    """The vhost an ``AMQP_URL`` names (its first node's path, percent-decoded); none means ``/``."""
    path = urlsplit(amqp_urls(amqp_url)[0]).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def management_endpoint(settings: Settings) -> ManagementEndpoint:
    """``RABBITMQ_MANAGEMENT_URL``, or the first ``AMQP_URL`` node's host on the management port.

    Credentials come from the management URL when it has them, else from ``AMQP_URL``.
    """
    amqp = urlsplit(amqp_urls(settings.amqp_url)[0])
    user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
    if settings.rabbitmq_management_url:
        parts = urlsplit(settings.rabbitmq_management_url)
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    else:
        tls = amqp.scheme == "amqps"
        host = amqp.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        base = f"{'https' if tls else 'http'}://{host}:{15671 if tls else 15672}"
    return ManagementEndpoint(base, user, password)


def _age(head_timestamp: int | None, now: dt.datetime) -> float | None:
    if head_timestamp is None:
        return None
    return max(0.0, now.timestamp() - head_timestamp)


# States a partition's row does not override the capability queue's with: healthy ones, and
# "unknown", which the management API reports for a queue it has no statistics for yet.
_NOT_TROUBLE = ("running", "idle", "flow", "unknown")


def _sum_rates(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def build_rows(raw: dict[str, _Raw], now: dt.datetime) -> list[QueueRow]:
    """One row per capability, from the raw figures of every queue the source listed.

    A capability's row folds in every work queue it has (chat: ``chat`` and its partitions
    ``chat.p0``...), with their delay and dead-letter queues: counts and rates are summed, the
    oldest age is the oldest of any. A queue not declared yet (a partition no pool consumes yet)
    adds nothing; the row is "absent" only when none of the capability's work queues exists.
    """
    rows = []
    for capability in ALL_QUEUES:
        queues = queues_of(capability)
        works = [raw[q] for q in queues if q in raw]
        delays = [raw[dq_name(q)] for q in queues if dq_name(q) in raw]
        deads = [raw[xq_name(q)] for q in queues if xq_name(q) in raw]
        main = raw.get(capability) or (works[0] if works else None)
        if main is None:
            state = "absent"
        else:  # a partition in trouble (crashed, minority, ...) shows, else the capability queue's state
            state = next((w.state for w in works if w.state not in _NOT_TROUBLE), main.state)
        ages = [_age(w.head_timestamp, now) for w in works if w.ready]
        known_ages = [a for a in ages if a is not None]
        rows.append(
            QueueRow(
                queue=capability,
                state=state,
                queue_type=main.queue_type if main else None,
                ready=sum(w.ready for w in works),
                unacked=sum(w.unacked for w in works),
                delayed=sum(d.ready + d.unacked for d in delays),
                dead=sum(d.ready + d.unacked for d in deads),
                consumers=max((w.consumers for w in works), default=0),
                in_rate=_sum_rates([w.publish_rate for w in works]),
                out_rate=_sum_rates([w.ack_rate for w in works]),
                deliver_rate=_sum_rates([w.deliver_rate for w in works]),
                oldest_age_s=max(known_ages) if known_ages else None,
            )
        )
    return rows


def _timestamp(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _rate(stats: dict[str, Any], key: str) -> float:
    details = stats.get(f"{key}_details")
    value = details.get("avg_rate") if isinstance(details, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0  # no stats yet: nothing moved


async def from_management(endpoint: ManagementEndpoint, vhost: str) -> dict[str, _Raw]:
    """Every queue of ``vhost``, from ``GET /api/queues/<vhost>`` with a minute of rate samples."""
    url = f"{endpoint.url}/api/queues/{quote(vhost, safe='')}"
    params = {"msg_rates_age": str(RATE_WINDOW_S), "msg_rates_incr": str(RATE_SAMPLE_S), "columns": _API_COLUMNS}
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, params=params, headers=endpoint.headers) as response,
    ):
        if response.status == 401:
            raise QueueStatsUnavailable(f"management API at {endpoint.url} refused the credentials (401)")
        if response.status == 404 and "Object Not Found" in await response.text():  # RabbitMQ's own 404
            raise VhostNotFound(f"management API at {endpoint.url}: vhost {vhost!r} not found")
        if response.status != 200:
            raise QueueStatsUnavailable(f"management API at {endpoint.url} answered HTTP {response.status}")
        queues = await response.json(content_type=None)
    raw = {}
    for q in queues:
        stats = q.get("message_stats") if isinstance(q.get("message_stats"), dict) else {}
        raw[q["name"]] = _Raw(
            state=str(q.get("state") or "unknown"),
            queue_type=q.get("type"),
            ready=int(q.get("messages_ready") or 0),
            unacked=int(q.get("messages_unacknowledged") or 0),
            consumers=int(q.get("consumers") or 0),
            head_timestamp=_timestamp(q.get("head_message_timestamp")),
            publish_rate=_rate(stats, "publish"),
            ack_rate=_rate(stats, "ack"),
            deliver_rate=_rate(stats, "deliver_get"),
        )
    return raw


async def from_rabbitmqctl(vhost: str) -> dict[str, _Raw]:
    """Every queue of ``vhost`` from ``rabbitmqctl list_queues`` (works on the broker host only)."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    try:
        proc = await asyncio.create_subprocess_exec(
            ctl,
            "-q",
            "list_queues",
            "-p",
            vhost,
            *_CTL_ITEMS,
            "--formatter",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise QueueStatsUnavailable(f"rabbitmqctl could not run: {exc}") from None
    try:
        async with asyncio.timeout(CTL_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise QueueStatsUnavailable(f"rabbitmqctl did not answer within {CTL_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        message = (err or out).decode(errors="replace").strip().splitlines()
        raise QueueStatsUnavailable(f"rabbitmqctl failed: {message[-1] if message else f'exit {proc.returncode}'}")
    try:
        return {
            q["name"]: _Raw(
                state=str(q.get("state") or "unknown"),
                queue_type=q.get("type") or None,
                ready=int(q.get("messages_ready") or 0),
                unacked=int(q.get("messages_unacknowledged") or 0),
                consumers=int(q.get("consumers") or 0),
                head_timestamp=_timestamp(q.get("head_message_timestamp")),
            )
            for q in json.loads(out or b"[]")
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise QueueStatsUnavailable("rabbitmqctl printed something other than the expected JSON") from None


async def collect(settings: Settings) -> QueueStats:
    """The management API's figures, else rabbitmqctl's; QueueStatsUnavailable if neither answers."""
    vhost = vhost_of(settings.amqp_url)
    endpoint = management_endpoint(settings)
    try:
        raw = await from_management(endpoint, vhost)
    except VhostNotFound:
        raise
    except QueueStatsUnavailable as exc:
        reason = str(exc)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"{endpoint.url}: {type(exc).__name__}{f': {exc}' if str(exc) else ''}"
    else:
        now = dt.datetime.now(dt.UTC)
        return QueueStats(
            source="management",
            vhost=vhost,
            endpoint=endpoint.url,
            collected_at=now,
            rate_window_s=RATE_WINDOW_S,
            rows=build_rows(raw, now),
        )
    try:
        raw = await from_rabbitmqctl(vhost)
    except QueueStatsUnavailable as exc:
        raise QueueStatsUnavailable(f"management API unavailable ({reason}); {exc}") from None
    now = dt.datetime.now(dt.UTC)
    return QueueStats(
        source="rabbitmqctl",
        vhost=vhost,
        endpoint="rabbitmqctl (local node)",
        collected_at=now,
        rate_window_s=None,
        fallback_reason=reason,
        rows=build_rows(raw, now),
    )
