"""GET /api/openapi.json on real nodes: the document of the routes the node serves."""

from __future__ import annotations

import json
import re

from ingress.app import init_app
from ingress.http.openapi import build_document


async def test_every_node_serves_the_document_of_its_routes(stack, http, settings):
    # Given the document of the app a node builds (tests/unit/test_openapi.py: it covers every route)
    expected = json.loads(json.dumps(build_document(init_app(settings))))
    for node in range(2):
        # When a client asks a running node for it
        async with http.get(stack.url("/api/openapi.json", node)) as resp:
            # Then it is that document, as JSON that no cache keeps
            assert resp.status == 200 and resp.content_type == "application/json"
            assert resp.headers["Cache-Control"] == "no-store"
            served = json.loads(await resp.read())
        assert re.fullmatch(r"3\.1\.\d+", served["openapi"])
        assert served == expected
