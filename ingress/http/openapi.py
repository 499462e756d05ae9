"""``GET /api/openapi.json``: the OpenAPI 3.1 document of this node's HTTP API, built from its router.

Every route whose handler carries an operation (ingress.http.api_docs) is in it, under the path
template aiohttp matches; request and answer bodies are the pydantic models of schemas/
(``model_json_schema``), and every refusal is the one error body of ingress.http.errors. The
Socket.IO endpoint and the static files carry none, so they are not in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ingress.http.api_docs import Answer, Operation, RawBody, documented, operation_of
from ingress.http.errors import HttpError, TooManyRequests
from schemas.http import ErrorResponse

OPENAPI_VERSION = "3.1.0"
DESCRIPTION = (
    "The HTTP API of a Gatekeeper ingress node; chat itself runs over Socket.IO at /socket.io/."
    " Every refusal has the body ErrorResponse. Any route answers 400 bad_request to a path or query"
    " with NUL or unpaired surrogate characters."
)
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

openapi_routes = web.RouteTableDef()
OPENAPI = web.AppKey("openapi_document", dict)


def install(app: web.Application) -> None:
    """The route, and the document's cache: built on the first request, once every route is added."""
    app[OPENAPI] = {}
    app.router.add_routes(openapi_routes)


@openapi_routes.get("/api/openapi.json")
@documented({200: "The OpenAPI 3.1 document"})
async def openapi_document(request: web.Request) -> web.Response:
    """This document: the node's HTTP API as OpenAPI 3.1."""
    document = request.app[OPENAPI]
    if not document:
        document.update(build_document(request.app))
    return web.json_response(document)


def build_document(app: web.Application) -> dict[str, Any]:
    """The document of ``app``'s documented routes."""
    routes = [
        (route.method, route.resource.canonical, route.handler, operation)
        for route in app.router.routes()
        if route.resource is not None and (operation := operation_of(route.handler)) is not None
    ]
    refs, schemas = _model_schemas(operation for *_, operation in routes)
    paths: dict[str, dict[str, Any]] = {}
    schemes: dict[str, Any] = {}
    errors: set[type[HttpError]] = set()
    for method, path, handler, operation in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler.__name__, operation, refs)
        schemes.update((scheme.name, dict(scheme.scheme)) for scheme in operation.security)
        errors.update(operation.errors)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Gatekeeper", "version": _version(), "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {e.__name__: _error(e, refs) for e in sorted(errors, key=lambda e: e.status)},
            "securitySchemes": schemes,
        },
    }


def _version() -> str:
    try:
        return metadata.version("gatekeeper")
    except metadata.PackageNotFoundError:
        return "0"


def _model_schemas(
    operations: Iterable[Operation],
) -> tuple[dict[tuple[Any, JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    """Every model's schema under components/schemas, and the reference to each (model, mode)."""
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorResponse, "serialization")}
    for operation in operations:
        if isinstance(operation.body, type):
            wanted.add((operation.body, "validation"))
        wanted.update((a, "serialization") for a in operation.answers.values() if isinstance(a, type))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, definitions = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    return refs, definitions.get("$defs", {})


def _operation(method: str, path: str, name: str, op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    head = method == "HEAD"  # aiohttp answers HEAD for every GET route: its headers, no body
    out: dict[str, Any] = {
        "operationId": f"{name}_head" if head else name,
        "summary": f"Headers of GET {path}" if head else op.summary,
        "tags": [_tag(path)],
    }
    if op.description and not head:
        out["description"] = op.description
    names = _PATH_PARAMETER.findall(path)
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    parameters += [
        {"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": dict(q.schema)}
        for q in op.query
    ]
    if parameters:
        out["parameters"] = parameters
    if op.security:
        out["security"] = [{scheme.name: []} for scheme in op.security]
    if op.body is not None and not head:
        out["requestBody"] = _request_body(op.body, refs)
    responses = {str(status): _answer(answer, op.media_type, refs, head) for status, answer in op.answers.items()}
    for error in sorted(op.errors, key=lambda e: e.status):
        responses[str(error.status)] = {"$ref": f"#/components/responses/{error.__name__}"}
    out["responses"] = responses
    return out


def _tag(path: str) -> str:
    """``/api/credits/...``: credits; ``/webhooks/...``: webhooks; ``/`` and ``/console``: pages."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return parts[1].removesuffix(".json")
    return "pages" if parts[0] in ("", "console") else parts[0]


def _request_body(body: type[BaseModel] | RawBody, refs: dict[Any, Any]) -> dict[str, Any]:
    if isinstance(body, RawBody):
        schema = _unmodelled(body.media_type)
        return {"required": True, "description": body.description, "content": {body.media_type: {"schema": schema}}}
    return {"required": True, "content": {"application/json": {"schema": refs[(body, "validation")]}}}


def _answer(answer: Answer, media_type: str, refs: dict[Any, Any], head: bool) -> dict[str, Any]:
    if isinstance(answer, str):
        description, schema = answer, _unmodelled(media_type)
    else:
        description, schema = (answer.__doc__ or answer.__name__).strip(), refs[(answer, "serialization")]
    if head:
        return {"description": description}
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _unmodelled(media_type: str) -> dict[str, Any]:
    """The schema of a body no model describes: a JSON object, or text."""
    return {"type": "object"} if media_type == "application/json" else {"type": "string"}


def _error(error: type[HttpError], refs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": f"{error.__doc__ or error.__name__} (error.code: {error.code} unless the route names another)",
        "content": {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}},
    }
    if issubclass(error, TooManyRequests):
        out["headers"] = {
            "Retry-After": {"description": "When to try again, in whole seconds", "schema": {"type": "integer"}}
        }
    return out
