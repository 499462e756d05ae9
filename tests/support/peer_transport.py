"""A stand-in for the transport of an aiohttp request, for ``make_mocked_request`` from a given peer."""

from __future__ import annotations

from typing import Any


class PeerTransport:
    """What aiohttp asks a connection for: the peer's address."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 50_000) if name == "peername" else default
