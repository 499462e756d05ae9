"""Room naming and who may join which room."""

from __future__ import annotations

import re
from enum import StrEnum

from domain.channels import conversation_room_tenant
from domain.errors import InvalidRoom, RoomForbidden

ROOM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
DIRECT_PREFIX = "dm:"


class RoomType(StrEnum):
    GROUP = "group"
    DIRECT = "direct"
    PRIVATE = "private"
    ADMIN = "admin"
    VENDOR = "vendor"
    AI = "ai"
    CONVERSATION = "conversation"  # conv:<tenant>:<conversation>, a tenant's operators only


def validate_room_id(room_id: str) -> str:
    if not ROOM_ID.fullmatch(room_id):
        raise InvalidRoom("roomId must be 1-128 characters from [A-Za-z0-9_.:-]")
    return room_id


def direct_members(room_id: str) -> tuple[str, str] | None:
    """The two members of a ``dm:<userA>:<userB>`` room, or None for other rooms."""
    if not room_id.startswith(DIRECT_PREFIX):
        return None
    parts = room_id.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InvalidRoom("a direct room is named dm:<userA>:<userB>")
    return parts[1], parts[2]


def resolve_join(
    room_id: str,
    requested: RoomType | None,
    user_id: str,
    *,
    operator_of: str | None = None,
    is_admin: bool = False,
) -> RoomType:
    """Check that ``user_id`` may join ``room_id`` and return the room's effective type.

    Any ``dm:`` room is direct whatever type the client asks for, so a third
    party cannot read a private conversation by joining it as a group. A
    ``conv:<tenant>:…`` room admits that tenant's operators and admins only.
    """
    validate_room_id(room_id)
    tenant = conversation_room_tenant(room_id)
    if tenant is not None:
        if not tenant:
            raise InvalidRoom("a conversation room is named conv:<tenant>:<conversation>")
        if not is_admin and operator_of != tenant:
            raise RoomForbidden("only the tenant's operators may join its conversations")
        return RoomType.CONVERSATION
    members = direct_members(room_id)
    if members is not None:
        if user_id not in members:
            raise RoomForbidden("only its two members may join a direct room")
        return RoomType.DIRECT
    if requested is RoomType.DIRECT:
        raise InvalidRoom("a direct room is named dm:<userA>:<userB>")
    return requested or RoomType.GROUP
