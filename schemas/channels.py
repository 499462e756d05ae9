"""Socket.IO room names used by ingress (joins) and workers (emits).

Namespaced so that no client-chosen room id can collide with a user's own channel.
"""


def room_channel(room_id: str) -> str:
    return f"r/{room_id}"


def user_channel(user_id: str) -> str:
    return f"u/{user_id}"


def tenant_channel(tenant_id: str) -> str:
    """Every operator of a tenant: the live inbox's events and the tenant's credit notices."""
    return f"t/{tenant_id}"


APPLIED_CHANNEL = "gatekeeper:applied"  # joined by no socket: the nodes read the workers' applied notices
APPLIED_EVENT = "commandsApplied"  # {messageIds: [...]}: chat sends the workers applied (or answered)
