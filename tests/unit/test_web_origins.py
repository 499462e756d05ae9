"""Which browser origins may open a Socket.IO connection: the allow-list plus the node's own."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from aiohttp.test_utils import make_mocked_request
from engineio.async_drivers.aiohttp import translate_request

from ingress.http.web_routes import socket_origins
from tests.support.peer_transport import PeerTransport

ALLOWED = ("http://localhost:5173",)
PROXY = "10.0.0.5"
TRUSTED = (ip_network("10.0.0.0/24"),)


def environ(host: str, *, peer: str = "203.0.113.9", **headers: str) -> dict[str, Any]:
    """The environ Engine.IO builds from a real aiohttp request from ``peer``."""
    request = make_mocked_request(
        "GET", "/socket.io/", headers={"Host": host, **headers}, transport=PeerTransport(peer)
    )
    return translate_request(request)


def test_listed_origins_are_allowed_anywhere():
    check = socket_origins(ALLOWED)
    assert check("http://localhost:5173", environ("127.0.0.1:8080"))


def test_the_node_own_origin_is_allowed():
    check = socket_origins(ALLOWED)
    assert check("http://127.0.0.1:8080", environ("127.0.0.1:8080"))
    assert check("http://chat.example.com", environ("chat.example.com"))


def test_behind_a_trusted_proxy_the_forwarded_host_and_proto_count():
    check = socket_origins(ALLOWED, TRUSTED)
    env = environ("10.0.0.7:8080", peer=PROXY, **{"X-Forwarded-Host": "chat.example.com", "X-Forwarded-Proto": "https"})
    assert check("https://chat.example.com", env)
    assert not check("http://chat.example.com", env)  # the scheme must match too


def test_forwarded_headers_from_an_untrusted_peer_are_ignored():
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    # No TRUSTED_PROXIES (the default): nobody's forwarded headers count.
    assert not socket_origins(ALLOWED)("https://evil.example", environ("127.0.0.1:8080", **forged))
    assert not socket_origins(ALLOWED)("http://evil.example", environ("127.0.0.1:8080", **forged))
    # A peer outside the trusted networks: the same.
    assert not socket_origins(ALLOWED, TRUSTED)("https://evil.example", environ("127.0.0.1:8080", **forged))
    # A forged proto does not turn the own origin into an https one either.
    assert not socket_origins(ALLOWED)("https://127.0.0.1:8080", environ("127.0.0.1:8080", **forged))


def test_other_origins_are_refused():
    check = socket_origins(ALLOWED)
    assert not check("http://127.0.0.1:8081", environ("127.0.0.1:8080"))  # another port is another origin
    assert not check("https://127.0.0.1:8080", environ("127.0.0.1:8080"))
    assert not check("https://evil.example", environ("127.0.0.1:8080"))
    assert not check("https://evil.example", {"wsgi.url_scheme": "http"})  # no request at all


def test_a_wildcard_in_the_list_allows_everything():
    assert socket_origins(("*",))("https://anything.example", environ("127.0.0.1:8080"))
