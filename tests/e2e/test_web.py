"""The web pages as HTTP: what ingress serves at /, /console and /static/, and /api/dev/token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import jwt
import pytest
from yarl import URL

from tests.support import isolation
from tests.support.processes import Proc
from tests.support.stacks import Stack

CSP = "default-src 'self'; connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'; img-src 'self' data:"


@pytest.fixture(scope="module")
def dev_node(stack: Stack) -> Iterator[Proc]:
    """One more node of the same deployment, with ALLOW_DEV_TOKENS on (the stack's nodes have it off)."""
    node = stack.processes.ingress(ALLOW_DEV_TOKENS="1")
    yield node
    node.terminate()


def node_url(node: Proc, path: str) -> str:
    return f"http://127.0.0.1:{node.port}{path}"


@pytest.mark.parametrize("path", ["/", "/console"])
async def test_pages_are_served_with_a_strict_csp_and_no_inline_code(stack, http, path):
    async with http.get(stack.url(path)) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["Content-Security-Policy"].startswith(CSP)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        html = await resp.text()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all('src="/static/' in tag and 'type="module"' in tag for tag in scripts)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html)  # no inline styles or handlers either


async def test_static_files_revalidate_with_their_etag(stack, http):
    for path, kind in [
        ("/static/js/shared/api.js", "javascript"),
        ("/static/vendor/socket.io.esm.min.js", "javascript"),
        ("/static/css/app.css", "text/css"),
    ]:
        async with http.get(stack.url(path)) as resp:
            assert resp.status == 200, path
            assert kind in resp.content_type
            assert resp.headers["Cache-Control"] == "no-cache"
            etag = resp.headers["ETag"]
            await resp.read()
        async with http.get(stack.url(path), headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304, path


async def test_static_serves_nothing_outside_the_web_directory(stack, http):
    base = f"http://127.0.0.1:{stack.ports[0]}"
    for raw in ["/static/missing.js", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/js"]:
        async with http.get(URL(base + raw, encoded=True)) as resp:
            assert resp.status == 404, raw
    async with http.get(URL(base + "/static/../app.py", encoded=True)) as resp:
        assert resp.status == 404


async def test_the_page_may_open_a_socket_to_the_node_that_served_it(stack, http):
    own = f"http://127.0.0.1:{stack.ports[0]}"
    handshake = stack.url("/socket.io/?EIO=4&transport=polling")
    async with http.get(handshake, headers={"Origin": own}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == own
    other_node = f"http://127.0.0.1:{stack.ports[1]}"  # not in ALLOWED_ORIGINS, not this node
    for origin in [other_node, "https://evil.example", f"https://127.0.0.1:{stack.ports[0]}"]:
        async with http.get(handshake, headers={"Origin": origin}) as resp:
            assert resp.status == 400, origin


async def test_dev_tokens_are_off_by_default(stack, http):
    async with http.get(stack.url("/api/dev/token")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"enabled": False}
    async with http.post(stack.url("/api/dev/token"), json={"userId": "mallory", "role": "admin"}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_a_dev_token_signs_in_as_that_user_only(stack, dev_node, http):
    async with http.get(node_url(dev_node, "/api/dev/token")) as resp:
        assert await resp.json() == {"enabled": True}
    async with http.post(node_url(dev_node, "/api/dev/token"), json={"userId": "web-ana", "name": "Ana"}) as resp:
        assert resp.status == 201
        body = await resp.json()
    claims = jwt.decode(body["token"], isolation.JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "web-ana" and claims["name"] == "Ana" and "role" not in claims
    assert body["expiresAt"] == claims["exp"] and claims["exp"] > claims["iat"]
    auth = {"Authorization": f"Bearer {body['token']}"}
    # Accepted by every node of the deployment (same secret); it reads its own stats, not others'.
    async with http.get(stack.url("/api/credits/stats/web-ana"), headers=auth) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_user"
    async with http.get(stack.url("/api/credits/stats/someone-else"), headers=auth) as resp:
        assert resp.status == 403


async def test_dev_token_roles(stack, dev_node, http):
    async with http.post(
        node_url(dev_node, "/api/dev/token"), json={"userId": "op-1", "role": "operator", "tenant": "acme"}
    ) as resp:
        assert resp.status == 201
        op = jwt.decode((await resp.json())["token"], isolation.JWT_SECRET, algorithms=["HS256"])
    assert (op["role"], op["tenant"], op["name"]) == ("operator", "acme", "op-1")
    async with http.post(node_url(dev_node, "/api/dev/token"), json={"userId": "root", "role": "admin"}) as resp:
        admin_token = (await resp.json())["token"]
    async with http.post(
        stack.url("/api/credits/grant/web-granted"),
        json={"credits": 1, "reason": "dev token test", "idempotencyKey": "web-1"},
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as resp:
        assert resp.status == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"userId": ""},
        {"userId": "x" * 129},
        {"userId": "   "},
        {"userId": "a\x00b"},
        {"userId": 7},
        {"userId": "u", "role": "root"},
        {"userId": "u", "role": "operator"},  # an operator needs a tenant
        {"userId": "u", "name": ""},
    ],
)
async def test_dev_token_requests_are_validated(dev_node, http, body):
    async with http.post(node_url(dev_node, "/api/dev/token"), json=body) as resp:
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "bad_request"
    async with http.post(node_url(dev_node, "/api/dev/token"), data=b"not json") as resp:
        assert resp.status == 400
