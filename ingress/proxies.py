"""Who the client is, behind reverse proxies we trust (``TRUSTED_PROXIES``) and no others.

``X-Forwarded-For``, ``-Host`` and ``-Proto`` are only believed when the TCP peer is a trusted
proxy; from anyone else they are whatever the client chose to send. ``client_ip`` walks
``X-Forwarded-For`` from the right (the hop nearest to us) past trusted proxies, so a client
cannot pose as another address by prepending its own entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from aiohttp import web

from ingress.state import APP_STATE

Network = IPv4Network | IPv6Network
UNKNOWN = "unknown"


def _trusted(request: web.BaseRequest, trusted: Iterable[Network] | None) -> tuple[Network, ...]:
    """``trusted`` if given, else the node's ``TRUSTED_PROXIES``."""
    if trusted is not None:
        return tuple(trusted)
    state = request.app.get(APP_STATE) if isinstance(request, web.Request) else None
    return state.settings.trusted_proxy_networks if state is not None else ()


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:51000"
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: str | None, trusted: Iterable[Network]) -> bool:
    parsed = _parse(address) if address else None
    return parsed is not None and any(parsed in network for network in trusted)


def _nearest_header(request: web.BaseRequest, name: str) -> str | None:
    """The value the nearest proxy set (the last one if it appended)."""
    values = [v.strip() for raw in request.headers.getall(name, ()) for v in raw.split(",") if v.strip()]
    return values[-1] if values else None


def peer_is_trusted(request: web.BaseRequest, trusted: Iterable[Network] | None = None) -> bool:
    return is_trusted(request.remote, _trusted(request, trusted))


def client_ip(request: web.BaseRequest, trusted: Iterable[Network] | None = None) -> str:
    """The client's address: the TCP peer, or, behind trusted proxies, the first untrusted hop."""
    trusted = _trusted(request, trusted)
    peer = request.remote or UNKNOWN
    if not is_trusted(peer, trusted):
        return str(_parse(peer) or peer)
    hops = [v.strip() for raw in request.headers.getall("X-Forwarded-For", ()) for v in raw.split(",")]
    client = _parse(peer)
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            break  # a garbled entry: believe nothing further left of it
        client = parsed
        if not any(parsed in network for network in trusted):
            break  # the first hop that is not one of our proxies: the client
    return str(client or peer)


def environ_client_ip(environ: Mapping[str, Any], trusted: Iterable[Network] | None = None) -> str:
    """``client_ip`` for a Socket.IO / Engine.IO ``environ`` (the aiohttp request is inside it)."""
    request = environ.get("aiohttp.request")
    return client_ip(request, trusted) if isinstance(request, web.BaseRequest) else UNKNOWN


def forwarded_host(request: web.BaseRequest, trusted: Iterable[Network] | None = None) -> str | None:
    """``X-Forwarded-Host`` if a trusted proxy set it, else None."""
    return _nearest_header(request, "X-Forwarded-Host") if peer_is_trusted(request, trusted) else None


def request_scheme(request: web.BaseRequest, trusted: Iterable[Network] | None = None) -> str:
    """``X-Forwarded-Proto`` from a trusted proxy, else the scheme of the connection itself."""
    proto = _nearest_header(request, "X-Forwarded-Proto") if peer_is_trusted(request, trusted) else None
    return proto.lower() if proto in ("http", "https", "HTTP", "HTTPS") else request.scheme
