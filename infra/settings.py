"""Configuration, read once from the environment (and an optional ``.env``) and passed in."""

from __future__ import annotations

import os
import socket
from functools import cached_property
from typing import Annotated
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.credits import CreditPolicy
from domain.rate_limits import RateWindow, parse_rate_limits

DEFAULT_ORIGINS = (
    "http://localhost:5173,http://localhost:3000,http://localhost:8080,"
    "http://127.0.0.1:8080,http://localhost:8081,http://127.0.0.1:8081"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/gatekeeper"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
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
    rate_limits: str = "5/1s,15/10s,500/1h"

    words_per_credit: int = Field(default=1000, ge=1)
    grace_words: int = Field(default=50, ge=0)
    word_window_ttl_s: int = Field(default=86_400, ge=1)
    signup_credits: int = Field(default=0, ge=0)
    recharge_url: str = "/billing"

    host: str = "127.0.0.1"
    port: int = Field(default=8080, validation_alias=AliasChoices("PORT", "CHAT_SERVER_PORT"))
    node_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    publish_timeout_s: float = Field(default=2.0, gt=0)
    worker_db_pool_size: int = Field(default=10, ge=1)
    history_size: int = Field(default=50, ge=0, le=500)
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

    # --- Plans, quotas and metered AI usage ---

    # --- BEZ on chain ---

    # --- Tips and calls ---

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, data: dict) -> dict:
        for key in ("allowed_origins", "ALLOWED_ORIGINS", "CORS_ORIGINS"):
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str):
                data[key] = tuple(o.strip() for o in value.split(",") if o.strip())
        return data

    @model_validator(mode="after")
    def _check_rate_limits(self) -> Settings:
        parse_rate_limits(self.rate_limits)
        return self

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
