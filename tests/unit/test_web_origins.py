"""Which browser origins may open a Socket.IO connection: the allow-list plus the node's own."""

from __future__ import annotations

from ingress.web_routes import socket_origins

ALLOWED = ("http://localhost:5173",)


def environ(host: str, scheme: str = "http", **extra: str) -> dict[str, str]:
    return {"HTTP_HOST": host, "wsgi.url_scheme": scheme, **extra}


def test_listed_origins_are_allowed_anywhere():
    check = socket_origins(ALLOWED)
    assert check("http://localhost:5173", environ("127.0.0.1:8080"))


def test_the_node_own_origin_is_allowed():
    check = socket_origins(ALLOWED)
    assert check("http://127.0.0.1:8080", environ("127.0.0.1:8080"))
    assert check("https://chat.example.com", environ("chat.example.com", scheme="https"))


def test_behind_a_proxy_the_forwarded_host_counts():
    check = socket_origins(ALLOWED)
    env = environ("10.0.0.5:8080", scheme="https", HTTP_X_FORWARDED_HOST="chat.example.com")
    assert check("https://chat.example.com", env)
    assert not check("http://chat.example.com", env)  # the scheme must match too


def test_other_origins_are_refused():
    check = socket_origins(ALLOWED)
    assert not check("http://127.0.0.1:8081", environ("127.0.0.1:8080"))  # another port is another origin
    assert not check("https://127.0.0.1:8080", environ("127.0.0.1:8080"))
    assert not check("https://evil.example", environ("127.0.0.1:8080"))
    assert not check("https://evil.example", {"wsgi.url_scheme": "http"})  # no Host header


def test_a_wildcard_in_the_list_allows_everything():
    assert socket_origins(("*",))("https://anything.example", environ("127.0.0.1:8080"))
