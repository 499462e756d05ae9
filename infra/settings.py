"""Configuration, read once from the environment (and an optional ``.env``) and passed in."""

from __future__ import annotations

import os
import socket
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal, TypedDict
from urllib.parse import quote

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.credit_packs import CreditPacks, parse_credit_packs
from domain.credits import CreditPolicy
from domain.rate_limits import RateWindow, parse_rate_limits
from schemas.commands import MAX_SEND_BATCH

DEFAULT_ORIGINS = (
    "http://localhost:5173,http://localhost:3000,http://localhost:8080,"
    "http://127.0.0.1:8080,http://localhost:8081,http://127.0.0.1:8081"
)


def _valid_rate_limits(spec: str) -> str:
    parse_rate_limits(spec)  # "<limit>/<window>,…"; refused at start-up, not at the first event
    return spec


RateLimitSpec = Annotated[str, AfterValidator(_valid_rate_limits)]


class RedisPool(TypedDict):
    """Keyword arguments of infra.redis_clients' builders that size their connection pools."""

    max_connections: int
    pool_timeout_s: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/gatekeeper"
    # A read replica for reads that may lag (credit history and stats, plan usage, analytics);
    # empty: they read from DATABASE_URL. Ledger writes and what decides them always use the primary.
    database_read_url: str = ""
    # Several RabbitMQ nodes: their URLs separated by ";" (or ","), tried in order, failed over in turn.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # "quorum": work, delay and dead-letter queues replicated across a RabbitMQ cluster. Every process
    # of a deployment must agree; switching needs empty queues or a new vhost (docs/scaling.md).
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    # redis://, rediss://, unix://, or redis+sentinel://[user:pw@]host1:26379,host2:26379/<db>/<master name>
    redis_url: str = ""
    # The original system's REDIS_* variables, used only when REDIS_URL is unset.
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: SecretStr = SecretStr("")
    redis_db: int = 0
    key_prefix: str = Field(default="gk", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    jwt_secret: SecretStr = Field(min_length=16)
    admin_token: SecretStr = Field(min_length=16)
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=tuple(DEFAULT_ORIGINS.split(",")),
        validation_alias=AliasChoices("ALLOWED_ORIGINS", "CORS_ORIGINS"),
    )
    rate_limits: RateLimitSpec = "5/1s,15/10s,500/1h"

    words_per_credit: int = Field(default=1000, ge=1)
    grace_words: int = Field(default=50, ge=0)
    word_window_ttl_s: int = Field(default=86_400, ge=1)
    signup_credits: int = Field(default=0, ge=0)
    recharge_url: str = "/billing"
    # POST /api/dev/token mints a JWT for any user id, role and tenant: development only, never in production.
    allow_dev_tokens: bool = False

    host: str = "127.0.0.1"
    port: int = Field(default=8080, validation_alias=AliasChoices("PORT", "CHAT_SERVER_PORT"))
    node_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    publish_timeout_s: float = Field(default=2.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)  # ingress: SIGTERM to exit, drain included
    # Chat sends one ingress flush rate-limits and publishes as one AMQP message (ingress/send_flusher.py).
    send_batch_max: int = Field(default=256, ge=1, le=MAX_SEND_BATCH)
    # Chat sends one ingress node holds unanswered (waiting or being published); beyond it: ``overloaded``.
    send_max_in_flight: int = Field(default=2048, ge=1)
    # Chat sends are refused with `overloaded` once the sends this node published have waited, or a
    # new one would wait, this long for the workers to apply them (ingress/chat_backlog.py); delivery
    # p99 is about this plus a batch's apply and fan-out. 0 turns the bound off.
    chat_backlog_max_ms: int = Field(default=500, ge=0)
    # Chat sends are refused with `overloaded` while this node's event loop runs this late, i.e. the
    # node itself is past its CPU (ingress/loop_lag.py); 0 turns the bound off.
    send_max_loop_lag_ms: int = Field(default=1000, ge=0)
    worker_db_pool_size: int = Field(default=10, ge=1)
    history_size: int = Field(default=50, ge=0, le=500)
    # Messages in one page of catch-up history: roomJoined after ``sinceSeq``, and the most
    # GET /api/rooms/{roomId}/messages returns at once.
    history_page_max: int = Field(default=200, ge=1, le=1000)
    # --- channels (Twilio, Meta) ---
    public_base_url: str = "http://127.0.0.1:8080"  # what providers call; webhook signatures cover it
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_api_base_url: str = "https://api.twilio.com"
    meta_app_secret: SecretStr = SecretStr("")
    meta_verify_token: SecretStr = SecretStr("")
    meta_access_token: SecretStr = SecretStr("")
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v21.0"
    outbound_max_attempts: int = Field(default=5, ge=1, le=20)
    outbound_timeout_s: float = Field(default=15.0, gt=0)
    webhook_dedupe_ttl_s: int = Field(default=86_400, ge=60)

    # --- AI agent (any OpenAI-compatible endpoint) ---
    openai_base_url: str = ""  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1 (vLLM, Ollama)
    openai_api_key: SecretStr = SecretStr("")
    ai_model: str = ""
    ai_agent_handle: str = "@AgenteIA"
    ai_agent_name: str = "AgenteIA"
    ai_context_messages: int = Field(default=20, ge=1, le=200)
    ai_max_tokens: int = Field(default=512, ge=16, le=32_000)
    ai_timeout_s: float = Field(default=30.0, gt=0)
    ai_max_attempts: int = Field(default=4, ge=1, le=10)
    ai_min_credits: int = Field(default=1, ge=0)
    # A room gets at most one messageDelta per interval (the model's pieces joined); 0 = every piece.
    ai_delta_interval_ms: int = Field(default=100, ge=0, le=5_000)

    @property
    def ai_configured(self) -> bool:
        return bool(self.openai_base_url and self.ai_model)

    # --- Billing: Stripe and LemonSqueezy credit packs ---
    stripe_secret_key: SecretStr = SecretStr("")  # sk_live_… / sk_test_…; empty: checkout answers 503
    stripe_webhook_secret: SecretStr = SecretStr("")  # whsec_…; empty: /webhooks/stripe answers 503
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_s: float = Field(default=20.0, gt=0)
    # Packs: "<id>:<credits>:<price in minor units>:<currency>", comma-separated.
    credit_packs: str = "pack_10:10:500:usd,pack_50:50:2000:usd,pack_200:200:6000:usd"
    checkout_success_url: str = "http://localhost:5173/billing/success?session_id={CHECKOUT_SESSION_ID}"
    checkout_cancel_url: str = "http://localhost:5173/billing/cancel"
    lemonsqueezy_webhook_secret: SecretStr = SecretStr("")  # empty: /webhooks/lemonsqueezy answers 503
    # LemonSqueezy variant id -> pack id: "<variant id>:<pack id>", comma-separated.
    lemonsqueezy_variants: str = ""

    @cached_property
    def credit_pack_list(self) -> CreditPacks:
        return parse_credit_packs(self.credit_packs, self.lemonsqueezy_variants)

    @model_validator(mode="after")
    def _check_credit_packs(self) -> Settings:
        parse_credit_packs(self.credit_packs, self.lemonsqueezy_variants)  # fail at start-up, not at checkout
        return self

    # --- Plans, quotas and metered AI usage ---
    # JSON {name: {price_id, monthly_credits, daily_messages, daily_ai_tokens}}; merged over the
    # defaults in domain.plans (free, starter, pro, business). null quota = unlimited.
    plans: str = ""
    # The Stripe Billing meter's event name; AI tokens are reported (with STRIPE_SECRET_KEY, to
    # STRIPE_API_BASE) only when both are set.
    stripe_meter_event_name: str = ""
    meter_report_interval_s: float = Field(default=60.0, gt=0)
    meter_batch_size: int = Field(default=100, ge=1, le=1000)

    @cached_property
    def plan_catalog(self):  # -> domain.plans.PlanCatalog
        from domain.plans import PlanCatalog

        return PlanCatalog.parse(self.plans)

    @model_validator(mode="after")
    def _check_plans(self) -> Settings:
        from domain.plans import PlanCatalog

        PlanCatalog.parse(self.plans)
        return self

    # --- BEZ on chain ---
    # A real node's JSON-RPC URL. Empty: the chain watcher hosts an in-process development chain
    # (eth-tester) with BEZ deployed at start-up and serves it on CHAIN_RPC_HOST:CHAIN_RPC_PORT.
    web3_provider_url: str = ""
    bez_contract_address: str = Field(default="", pattern=r"^(0x[0-9a-fA-F]{40})?$")
    treasury_address: str = Field(default="", pattern=r"^(0x[0-9a-fA-F]{40})?$")
    chain_confirmations: int = Field(default=2, ge=0, le=10_000)
    chain_poll_interval_s: float = Field(default=1.0, gt=0)
    chain_start_block: int = Field(default=0, ge=0)  # where a new cursor starts on a real node
    chain_scan_batch_blocks: int = Field(default=1_000, ge=1, le=100_000)
    chain_rpc_host: str = "127.0.0.1"
    chain_rpc_port: int = Field(default=8545, ge=1, le=65_535)
    chain_block_time_s: float = Field(default=2.0, ge=0)  # embedded chain: an empty block this often; 0 = off
    chain_rpc_timeout_s: float = Field(default=10.0, gt=0)
    wallet_challenge_ttl_s: int = Field(default=300, ge=30, le=86_400)

    # --- Tips and calls ---
    # The largest single tip, in credits.
    tip_max_credits: int = Field(default=100_000, ge=1, le=1_000_000_000)
    # Calls: credits per started minute, caller -> callee; the platform keeps floor(price*pct/100).
    call_price_per_minute: int = Field(default=10, ge=0)
    platform_fee_pct: int = Field(default=20, ge=0, le=100)
    call_minute_s: float = Field(default=60.0, gt=0)  # the billing minute (shorter only in tests)
    call_heartbeat_timeout_s: float = Field(default=90.0, gt=0)  # a call silent this long is ended
    call_sweep_interval_s: float = Field(default=10.0, gt=0)  # how often billing workers look for them
    call_ring_timeout_s: int = Field(default=60, ge=1)  # an unanswered initiate-call is forgotten
    call_state_ttl_s: int = Field(default=21_600, ge=60)  # signaling state, renewed by heartbeats
    call_signal_max_bytes: int = Field(default=16_384, ge=256, le=60_000)  # one signal's JSON data

    # --- Sentry (errors from ingress and workers, scrubbed; off while SENTRY_DSN is empty) ---
    sentry_dsn: SecretStr = SecretStr("")
    sentry_environment: str = "development"
    sentry_release: str = ""  # default: gatekeeper@<installed version>
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)

    # --- Metrics ---
    # Ingress GET /metrics: with a token set, scrapers must send it as a Bearer; without one the public
    # port answers 404 and only METRICS_HOST:METRICS_PORT serves it (limits: edges).
    metrics_token: SecretStr = SecretStr("")
    # A worker pool's /metrics port (one per pool and machine); 0 = no metrics server.
    worker_metrics_port: int = Field(default=0, ge=0, le=65_535)
    worker_metrics_host: str = "127.0.0.1"
    # Where a pool's processes keep their shared metric files (a fresh sub-directory per pool run).
    worker_metrics_dir: str = ""  # empty: the system's temp directory
    # RabbitMQ's management HTTP API, read by python -m scripts.status (rates, oldest message age);
    # empty: the first AMQP_URL node's host on port 15672 (https and 15671 for amqps), its user and password.
    rabbitmq_management_url: str = Field(default="", pattern=r"^(https?://[^\s/]+(/\S*)?)?$")

    # --- Security limits (docs/security.md); each group below is one area's bounds ---
    # limits: parsing (JSON depth and size, binary packets)
    # Deepest JSON nesting (arrays and objects) accepted in socket packets, HTTP and webhook bodies;
    # deeper is refused before parsing (socket: closed; HTTP: 400 json_too_deep).
    json_max_depth: int = Field(default=32, ge=8, le=512)
    # limits: socket events (joins, rooms, typing, mark-read, connections, unauthenticated sessions)
    # joinRoom per socket (this node) and per user (all nodes, Redis), in RATE_LIMITS' format.
    socket_join_limits: RateLimitSpec = "5/1s,60/1m"
    user_join_limits: RateLimitSpec = "20/1s,300/1m"
    socket_max_rooms: int = Field(default=100, ge=1, le=10_000)  # rooms one socket may be in at once
    # At most one userTyping per room, user and state per interval (a stop after a start always goes out).
    typing_interval_ms: int = Field(default=2_000, ge=100, le=60_000)
    # mark-read: lookups per socket (RATE_LIMITS' format), and at most one stored mark per room and user
    # per interval (the newest message marked meanwhile is stored when it ends).
    read_mark_limits: RateLimitSpec = "50/1s,600/1m"
    read_mark_interval_ms: int = Field(default=2_000, ge=100, le=60_000)
    # Socket.IO connections per user and per client IP, on each node; apart, as many Engine.IO sessions
    # per IP that have not connected yet.
    socket_max_per_user: int = Field(default=20, ge=1, le=100_000)
    socket_max_per_ip: int = Field(default=500, ge=1, le=1_000_000)
    # An Engine.IO session that has not connected (authenticated) within this long is closed.
    socket_auth_timeout_s: float = Field(default=10.0, ge=0.5, le=300)

    # limits: calls and presence (ring attempts, heartbeats, dropped parties, disconnect cleanup)
    # initiate-call and callStart per caller, and rings to one callee (from anyone), in RATE_LIMITS' format;
    # a caller also has at most one call ringing at a time.
    call_ring_limits: RateLimitSpec = "6/1m,60/1h"
    call_callee_ring_limits: RateLimitSpec = "10/1m,100/1h"
    # signal (SDP, ICE candidates) per socket: a call's set-up sends a few dozen in its first second.
    call_signal_limits: RateLimitSpec = "60/1s,600/1m"
    # At most one callHeartbeat per call reaches the billing queue per interval (only the caller's count).
    call_heartbeat_min_interval_s: float = Field(default=5.0, ge=0.05, le=60)
    # A call ends once either party has had no socket (on any node) for this long; billed to the drop.
    call_disconnect_grace_s: float = Field(default=30.0, ge=0.5, le=3_600)
    # Every Redis client's pool (ingress, workers, Socket.IO's manager): a burst waits up to the timeout
    # for a free connection instead of failing.
    redis_max_connections: int = Field(default=500, ge=10, le=20_000)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check_call_heartbeats(self) -> Settings:
        if self.call_heartbeat_min_interval_s * 2 > self.call_heartbeat_timeout_s:
            raise ValueError("CALL_HEARTBEAT_MIN_INTERVAL_S must be at most half of CALL_HEARTBEAT_TIMEOUT_S")
        return self

    @property
    def redis_pool(self) -> RedisPool:
        """Keyword arguments of infra.redis_clients' builders."""
        return {"max_connections": self.redis_max_connections, "pool_timeout_s": self.redis_pool_timeout_s}

    # limits: edges (tokens, metrics, admin auth, wallet challenges, proxies)
    # Clock skew allowed on a JWT's exp/iat/nbf; every token must carry exp.
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    # Without METRICS_TOKEN the public port's /metrics answers 404; this listener serves it instead
    # (METRICS_PORT 0 = none). With a token, both answer only to "Authorization: Bearer <token>".
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65_535)
    # Failed admin authentications per client IP within the window before it gets 429 + Retry-After.
    admin_auth_max_failures: int = Field(default=20, ge=1, le=100_000)
    admin_auth_window_s: int = Field(default=60, ge=1, le=86_400)
    # Wallet-link challenges one user may hold unexpired at once (429 beyond).
    wallet_max_challenges: int = Field(default=5, ge=1, le=1_000)
    # Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-For/-Host/-Proto are believed; empty: none.
    trusted_proxies: str = ""

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",") if p.strip())

    @model_validator(mode="after")
    def _check_trusted_proxies(self) -> Settings:
        try:
            _ = self.trusted_proxy_networks
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {exc}") from None
        return self

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    # uvloop (libuv) for ingress nodes and the workers' event loop threads; asyncio: the standard loop.
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$")

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, data: dict) -> dict:
        for key in ("allowed_origins", "ALLOWED_ORIGINS", "CORS_ORIGINS"):
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str):
                data[key] = tuple(o.strip() for o in value.split(",") if o.strip())
        return data

    @model_validator(mode="after")
    def _check_cluster_urls(self) -> Settings:
        from infra.amqp import amqp_urls
        from infra.redis_clients import check_redis_url

        amqp_urls(self.amqp_url)
        check_redis_url(self.effective_redis_url)
        if self.database_read_url and not self.database_read_url.startswith(("postgres://", "postgresql://")):
            raise ValueError("DATABASE_READ_URL must be a postgresql:// URL (or empty)")
        return self

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        from infra.amqp import amqp_urls

        return amqp_urls(self.amqp_url)

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        password = self.redis_password.get_secret_value()
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @cached_property
    def credit_policy(self) -> CreditPolicy:
        return CreditPolicy(self.words_per_credit, self.grace_words, self.word_window_ttl_s)

    @cached_property
    def rate_windows(self) -> tuple[RateWindow, ...]:
        return parse_rate_limits(self.rate_limits)

    def key(self, *parts: str) -> str:
        """A Redis key or channel name inside this deployment's namespace."""
        return ":".join((self.key_prefix, *parts))
