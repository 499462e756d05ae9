"""``client_ip``: the TCP peer unless it is a trusted proxy; never what an untrusted client claims."""

from __future__ import annotations

from ipaddress import ip_network

from aiohttp.test_utils import make_mocked_request
from engineio.async_drivers.aiohttp import translate_request

from ingress.proxies import client_ip, environ_client_ip, forwarded_host, request_scheme
from tests.support.peer_transport import PeerTransport

TRUSTED = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))


def request(peer: str, **headers: str):
    return make_mocked_request("GET", "/", headers=headers, transport=PeerTransport(peer))


def test_without_trusted_proxies_the_peer_is_the_client():
    forged = request("203.0.113.9", **{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil.example"})
    assert client_ip(forged, ()) == "203.0.113.9"
    assert client_ip(forged, TRUSTED) == "203.0.113.9"  # the peer is not one of ours
    assert forwarded_host(forged, TRUSTED) is None
    assert request_scheme(request("203.0.113.9", **{"X-Forwarded-Proto": "https"}), TRUSTED) == "http"


def test_behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client():
    # The client prepended a forged entry; the proxies appended the real address and their own.
    chain = request("10.0.0.2", **{"X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.0.0.3"})
    assert client_ip(chain, TRUSTED) == "198.51.100.7"
    only_proxies = request("10.0.0.2", **{"X-Forwarded-For": "10.0.0.3"})
    assert client_ip(only_proxies, TRUSTED) == "10.0.0.3"  # an internal client behind our proxies
    assert client_ip(request("10.0.0.2"), TRUSTED) == "10.0.0.2"
    garbled = request("10.0.0.2", **{"X-Forwarded-For": "1.2.3.4, not-an-ip"})
    assert client_ip(garbled, TRUSTED) == "10.0.0.2"
    proxied = request("10.0.0.2", **{"X-Forwarded-Host": "chat.example.com", "X-Forwarded-Proto": "https"})
    assert forwarded_host(proxied, TRUSTED) == "chat.example.com"
    assert request_scheme(proxied, TRUSTED) == "https"


def test_ipv6_and_ports_are_understood():
    assert client_ip(request("2001:db8::1", **{"X-Forwarded-For": "[2001:db9::5]:443"}), TRUSTED) == "2001:db9::5"
    assert client_ip(request("10.1.1.1", **{"X-Forwarded-For": "198.51.100.7:5000"}), TRUSTED) == "198.51.100.7"


def test_the_socketio_environ_gives_the_same_answer():
    env = translate_request(request("10.0.0.2", **{"X-Forwarded-For": "198.51.100.7"}))
    assert environ_client_ip(env, TRUSTED) == "198.51.100.7"
    assert environ_client_ip(env, ()) == "10.0.0.2"
    assert environ_client_ip({}, TRUSTED) == "unknown"


def test_trusted_proxies_setting_is_parsed_and_checked_at_start():
    import pytest
    from pydantic import ValidationError

    from infra.settings import Settings

    base = {"jwt_secret": "x" * 16, "admin_token": "y" * 16}
    assert Settings(**base).trusted_proxy_networks == ()
    parsed = Settings(**base, trusted_proxies=" 10.0.0.0/8, 192.168.1.7 ,::1").trusted_proxy_networks
    assert [str(n) for n in parsed] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
        Settings(**base, trusted_proxies="10.0.0.0/8,not-an-address")
