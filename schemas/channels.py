"""Socket.IO room names used by ingress (joins) and workers (emits).

Namespaced so that no client-chosen room id can collide with a user's own channel.
"""


def room_channel(room_id: str) -> str:
    return f"r/{room_id}"


def user_channel(user_id: str) -> str:
    return f"u/{user_id}"
