"""Admin HTTP bodies for tenants and their channels."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from domain.channels import Channel
from schemas.base import Storable

TENANT_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class _Body(Storable):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelRef(_Body):
    channel: Channel
    address: str = Field(min_length=1, max_length=128)


class CreateTenant(_Body):
    tenantId: str = Field(pattern=TENANT_ID)
    name: str = Field(min_length=1, max_length=200)
    systemPrompt: str = Field(default="", max_length=20_000)
    autoReply: bool = False
    channels: list[ChannelRef] = Field(default_factory=list, max_length=50)


class UpdateTenant(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    systemPrompt: str | None = Field(default=None, max_length=20_000)
    autoReply: bool | None = None
    addChannels: list[ChannelRef] = Field(default_factory=list, max_length=50)
    removeChannels: list[ChannelRef] = Field(default_factory=list, max_length=50)
