"""GET /api/openapi.json: built from the real app's router, so every route is in it and nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from infra.settings import Settings
from ingress.app import init_app
from ingress.http import openapi
from ingress.http.errors import HttpError, TooManyRequests, error_response
from ingress.http.openapi import build_document
from schemas.http import ErrorResponse

# The routes the document leaves out, each with its reason; nothing else may be missing.
UNDOCUMENTED = {
    "/socket.io/": "the Socket.IO endpoint (python-engineio's handler for its handshake and transports): a"
    " protocol of its own, whose events are the models of schemas/socket_events.py",
    "/static/{path}": "the web pages' static files (ES modules, CSS, the vendored Socket.IO client): files, not an API",
}


@pytest.fixture(scope="module")
def app() -> web.Application:
    """The node's app as ``python -m ingress`` builds it; nothing is started or connected."""
    return init_app(Settings(jwt_secret="unit-test-jwt-secret-0123456789", admin_token="unit-test-admin-token"))


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return json.loads(json.dumps(build_document(app)))  # as a client reads it


def routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    validate(document)  # the OpenAPI 3.1 schema, and every $ref resolves


def test_every_route_is_in_the_document_and_no_other_path(app, document):
    # Given the routes registered on the app, less the ones left out on purpose
    expected = {(method, path) for method, path in routes(app) if path not in UNDOCUMENTED}
    # Then the document has exactly those operations (HEAD too: aiohttp answers it for every GET)
    assert {(method, path) for method, path, _ in operations(document)} == expected
    assert set(document["paths"]) <= {path for _, path in routes(app)}


def test_each_route_left_out_is_still_a_route(app):
    assert set(UNDOCUMENTED) <= {path for _, path in routes(app)}


def test_operations_have_unique_ids_a_summary_and_their_path_parameters(document):
    ids = [operation["operationId"] for *_, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(document):
        assert operation["summary"], (method, path)
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_bodies_and_refusals_come_from_the_models(document):
    grant = document["paths"]["/api/credits/grant/{userId}"]["post"]
    assert grant["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GrantCredits"
    }
    assert grant["responses"]["409"] == {"$ref": "#/components/responses/Conflict"}
    stats = document["paths"]["/api/credits/stats/{userId}"]["get"]
    assert stats["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CreditStats")
    assert stats["security"] == [{"adminToken": []}, {"bearerJwt": []}]
    refusal = document["components"]["responses"]["Forbidden"]["content"]["application/json"]["schema"]
    assert refusal == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "Retry-After" in document["components"]["responses"]["TooManyRequests"]["headers"]
    stripe = document["paths"]["/webhooks/stripe"]["post"]
    assert stripe["security"] == [{"stripeSignature": []}] and {"400", "503"} <= set(stripe["responses"])


def test_every_error_renders_the_documented_body():
    kinds = HttpError.__subclasses__()
    assert len(kinds) >= 8
    for kind in kinds:
        # Given one of each error, as a handler raises it
        error = kind("why", 2.5) if kind is TooManyRequests else kind("why")  # type: ignore[call-arg]
        # When the middleware renders it
        response = error_response(error)
        body = json.loads(response.text)
        # Then it is the documented body, with the class's status and code
        assert response.status == kind.status and body["error"]["code"] == kind.code
        assert ErrorResponse.model_validate(body).model_dump(exclude_none=True) == body
    assert error_response(TooManyRequests("slow down", 2.5)).headers["Retry-After"] == "3"


async def test_the_route_serves_the_document_of_its_app():
    app = web.Application()
    openapi.install(app)
    async with TestServer(app) as server, ClientSession() as http:
        for _ in range(2):  # built once, then served from the cache
            async with http.get(server.make_url("/api/openapi.json")) as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                served = await resp.json()
    assert served == json.loads(json.dumps(build_document(app)))
    assert list(served["paths"]) == ["/api/openapi.json"]
