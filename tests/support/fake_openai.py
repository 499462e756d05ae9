"""A local stand-in for an OpenAI-compatible endpoint, on 127.0.0.1 and a random port.

It speaks ``POST /v1/chat/completions`` closely enough for the real ``openai`` package:

- a plain request answers a ``chat.completion`` (``id``, ``created``, ``model``,
  ``choices[0].message``, ``finish_reason``, ``usage``);
- ``stream: true`` answers Server-Sent Events: ``chat.completion.chunk`` objects carrying the reply
  in several ``choices[0].delta.content`` pieces (``chunk_delay_s`` apart), a final usage chunk when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``;
- ``response_format.type == "json_schema"`` answers the JSON of ``classification``;
- errors as OpenAI's ``{"error": {"message", "type", "code"}}``; ``401`` when ``api_key`` is set and the
  request's ``Authorization: Bearer …`` does not match.

The default reply repeats (truncated) the last user message; ``reply_text`` fixes it. Tokens are
counted as whitespace-separated words (prompt: every message's content; completion: the reply).

It records every request (even refused ones), answers after ``delay_s``, counts requests in flight
(``in_flight``, ``max_in_flight``) and can be scripted to answer differently first::

    fake.script(Reply.rate_limited(retry_after=1), Reply.server_error())   # the next two requests
    fake.script(Reply.slow(5), Reply.malformed_json(), Reply.ok(text="Hola"))

Start it on the running event loop (``await fake.start()``, ``fake.url`` is the ``/v1`` base URL);
a worker process reaches it over loopback, so never block that loop while a worker is calling.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_CLASSIFICATION: dict[str, Any] = {
    "intent": "pricing_question",
    "confidence": 0.87,
    "lead": "hot",
    "summary": "The customer asks about prices and seems ready to buy.",
}


@dataclass(frozen=True)
class Reply:
    """A scripted answer for one request."""

    kind: str  # ok | error | malformed_json | cut_stream
    status: int = 200
    text: str | None = None  # the reply (or, for json_schema requests, the content) instead of the default
    message: str = ""
    error_type: str = ""
    error_code: str | None = None
    retry_after: str | None = None
    delay_s: float | None = None  # overrides the server's delay for this answer

    @classmethod
    def ok(cls, text: str | None = None, delay_s: float | None = None) -> Reply:
        return cls("ok", text=text, delay_s=delay_s)

    @classmethod
    def slow(cls, seconds: float, text: str | None = None) -> Reply:
        return cls("ok", text=text, delay_s=seconds)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Reply:
        return cls(
            "error",
            429,
            message="Rate limit reached for requests",
            error_type="requests",
            error_code="rate_limit_exceeded",
            retry_after=None if retry_after is None else str(retry_after),
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(
            "error", status, message="The server had an error while processing your request.", error_type="server_error"
        )

    @classmethod
    def error(cls, status: int, message: str, error_type: str = "invalid_request_error", code: str | None = None):
        return cls("error", status, message=message, error_type=error_type, error_code=code)

    @classmethod
    def malformed_json(cls) -> Reply:
        """Content that is not JSON (for a classification) or a text cut mid-way (for a reply)."""
        return cls("malformed_json")

    @classmethod
    def cut_stream(cls, text: str | None = None) -> Reply:
        """Stream half of the reply, then drop the connection (no usage, no ``[DONE]``)."""
        return cls("cut_stream", text=text)


@dataclass
class Recorded:
    """One request as the fake saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    started: float  # time.monotonic()
    finished: float | None = None
    status: int | None = None


def words(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _error_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


@dataclass
class FakeOpenAI:
    api_key: str | None = None
    delay_s: float = 0.0  # before the answer (before the first chunk when streaming)
    chunk_delay_s: float = 0.01
    chunks: int = 4  # pieces a streamed reply is split into (at most; never inside a word)
    reply_text: str | None = None
    classification: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CLASSIFICATION))
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _script: deque[Reply] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    port: int = 0

    # --- lifecycle ---
    async def start(self) -> FakeOpenAI:
        app = web.Application(client_max_size=16 * 1024**2)
        app.add_routes([web.post("/v1/chat/completions", self._chat_completions)])
        # handler_cancellation: a client that gives up (timeout) stops being counted in flight at once.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting and inspection ---
    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then the default answer again."""
        self._script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()
        self.max_in_flight = 0

    def default_reply(self, body: dict[str, Any]) -> str:
        if self.reply_text is not None:
            return self.reply_text
        users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
        last = " ".join(_content_text(users[-1].get("content")).split()) if users else ""
        if len(last) > 80:
            last = last[:79].rstrip() + "…"
        return f"Hola, soy AgenteIA. Sobre «{last}»: con gusto te ayudo."

    # --- the endpoint ---
    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        rec = Recorded(body if isinstance(body, dict) else {}, dict(request.headers), time.monotonic())
        self.requests.append(rec)
        reply = self._script.popleft() if self._script else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._respond(request, rec, reply)
            rec.status = response.status
            return response
        finally:
            self.in_flight -= 1
            rec.finished = time.monotonic()

    async def _respond(self, request: web.Request, rec: Recorded, reply: Reply | None) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                _error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), status=401
            )
        body = rec.body
        if not body.get("model") or not isinstance(body.get("messages"), list) or not body["messages"]:
            return web.json_response(
                _error_body("'model' and a non-empty 'messages' are required.", "invalid_request_error", None),
                status=400,
            )
        delay = reply.delay_s if reply is not None and reply.delay_s is not None else self.delay_s
        if delay:
            await asyncio.sleep(delay)
        if reply is not None and reply.kind == "error":
            headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else None
            return web.json_response(
                _error_body(reply.message, reply.error_type, reply.error_code), status=reply.status, headers=headers
            )

        json_mode = (body.get("response_format") or {}).get("type") == "json_schema"
        if reply is not None and reply.text is not None:
            content = reply.text
        elif json_mode:
            content = json.dumps(self.classification, ensure_ascii=False)
        else:
            content = self.default_reply(body)
        if reply is not None and reply.kind == "malformed_json":  # JSON (or a text) cut half-way
            content = content[: max(len(content) // 2, 1)]

        prompt_tokens = sum(words(_content_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": words(content),
            "total_tokens": prompt_tokens + words(content),
        }
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        model = str(body["model"])
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": "fp_fake",
                }
            )
        return await self._stream(request, reply, completion_id, created, model, content, usage, body)

    async def _stream(
        self,
        request: web.Request,
        reply: Reply | None,
        completion_id: str,
        created: int,
        model: str,
        content: str,
        usage: dict[str, int],
        body: dict[str, Any],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, with_usage: bool = False) -> bytes:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
            }
            data["choices"] = (
                [] if with_usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            )
            if with_usage:
                data["usage"] = usage
            elif (body.get("stream_options") or {}).get("include_usage"):
                data["usage"] = None
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        pieces = split_text(content, self.chunks)
        if reply is not None and reply.kind == "cut_stream":
            pieces = pieces[: max(len(pieces) // 2, 1)]
        await response.write(chunk({"role": "assistant", "content": ""}))
        for piece in pieces:
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await response.write(chunk({"content": piece}))
        if reply is not None and reply.kind == "cut_stream":
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(chunk({}, with_usage=True))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def split_text(text: str, n: int) -> list[str]:
    """``text`` in at most ``n`` consecutive pieces, cut after spaces, that join back into it."""
    tokens = text.split(" ")
    if n <= 1 or len(tokens) <= 1:
        return [text]
    size = -(-len(tokens) // n)
    groups = [tokens[i : i + size] for i in range(0, len(tokens), size)]
    return [" ".join(g) + (" " if i < len(groups) - 1 else "") for i, g in enumerate(groups)]
