"""The AI model adapter: any OpenAI-compatible chat-completions endpoint, through the ``openai`` package.

One :class:`ModelClient` per worker process (create it on the event loop that will use it), holding
one ``AsyncOpenAI`` client whose connection pool is sized for many concurrent calls
(:data:`HTTP_CONNECTION_LIMIT`): a call is an ``await`` on the network, so hundreds can be in flight
on one event loop. Nothing is downloaded at run time (no tokenizer files): token counts are the
server's ``usage``; a server that sends none is recorded as 0 tokens.

Retries are :mod:`tenacity`'s, and only ours: the client's own retries are off (``max_retries=0``),
so ``AI_MAX_ATTEMPTS`` is the number of requests the endpoint can see for one call. Every attempt
fails with a :class:`ModelError` whose ``code`` says what happened:

============ ============================================================ ==========
code         cause                                                        retried
============ ============================================================ ==========
rate_limited HTTP 429 (after ``Retry-After`` when sent, capped at 30 s)    yes
unavailable  HTTP 5xx, 409, a refused or broken connection, a stream that  yes
             carries an error event or ends before ``[DONE]``
timeout      no answer (no byte) within ``AI_TIMEOUT_S``; HTTP 408         yes
bad_response an answer we cannot use: malformed JSON or a classification   yes
             outside the schema, an empty reply, an unparsable chunk
bad_response HTTP 400/422: the endpoint refused our request (unsupported   no
             parameter, context too long); the same request fails again
unavailable  HTTP 401/403/404 and other 4xx: wrong key, no access, unknown no
             model or base URL; a configuration fault, not the model's
============ ============================================================ ==========

Other waits use exponential backoff with jitter (0.5 s, 1 s, 2 s, … capped at 10 s). When the
attempts run out, the last attempt's error is raised, with ``attempts`` and the total ``latency_ms``.

``AI_TIMEOUT_S`` is httpx's timeout for connecting and for each read, so for a streamed reply it
bounds the silence between two chunks, not the whole generation (a long answer from a slow model
may take longer; dramatiq's ``time_limit`` bounds that). A classification, answered in one piece,
is bounded as a whole by the same figure.

A dropped connection surfaces as whatever the HTTP transport maps it to: with aiohttp's (below)
some arrive as ``timeout`` rather than ``unavailable``; both are retried alike.

Replies are streamed with ``chat.completions.with_streaming_response.create(..., stream=True)`` and
the Server-Sent Events parsed here with ``json.loads``: the library's typed chunk objects cost
about 0.1 ms of CPU each, one per token, which at hundreds of replies in flight would make the
CPU, not the model, the limit of a process. Under ``AsyncOpenAI`` runs aiohttp's HTTP transport
when the installed ``openai`` has it (httpcore's pool costs O(connections) per request), else httpx's.

**A retry after deltas were streamed restarts the completion**: the new attempt streams its own
text from the start through ``on_delta`` again, and the text returned is that attempt's alone.
Callers that forward deltas must treat them as a preview and send the final, whole text returned
here (which they do: the stored and charged reply is ``Completion.text``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import structlog
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from infra.settings import Settings
from schemas.ai import Classification
from workers.providers import parse_retry_after

# The HTTP library the installed openai is built on: httpx (openai 1.x, 2.x) or httpx2 (3.x), the same API.
httpx: Any = importlib.import_module(
    next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient").__module__.partition(".")[0]
)

log = structlog.get_logger(__name__)

# Sized so the pool never limits calls in flight: one process may run hundreds of worker threads,
# each waiting on one call (httpx's default of 100 connections would queue the rest).
HTTP_CONNECTION_LIMIT = 1024
HTTP_KEEPALIVE_LIMIT = 256
RETRY_AFTER_CAP_S = 30.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0

# JSON-schema keywords strict structured outputs do not accept everywhere; the bounds they carry
# are still enforced by Classification.model_validate_json (a violation is a retried bad_response).
_UNSTRICT_KEYWORDS = ("title", "default", "minLength", "maxLength", "minimum", "maximum", "pattern")
_BOUND_PHRASES = {
    "minimum": "at least {}",
    "maximum": "at most {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    latency_ms: int  # from the first attempt's start to the answer, waits between attempts included


class ModelError(Exception):
    """A model call that failed; ``code`` is rate_limited, unavailable, timeout or bad_response."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
        attempts: int = 1,
        latency_ms: int = 0,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        self.latency_ms = latency_ms


class ModelNotConfigured(Exception):
    """``OPENAI_BASE_URL`` or ``AI_MODEL`` is unset: no call is made."""


def strict_schema(model: type[Classification]) -> dict[str, Any]:
    """``model``'s JSON schema in the subset strict structured outputs accept.

    Every object closed (``additionalProperties: false``) with every property required; bounds
    moved from keywords into the descriptions, where the model reads them.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value) for key, value in node.items() if key not in _UNSTRICT_KEYWORDS}
        bounds = [phrase.format(node[key]) for key, phrase in _BOUND_PHRASES.items() if key in node]
        if bounds and "type" in node:
            out["description"] = "; ".join(filter(None, [node.get("description", ""), ", ".join(bounds)]))
        if node.get("type") == "object" and "properties" in node:
            out["additionalProperties"] = False
            out["required"] = list(node["properties"])
        return out

    return walk(model.model_json_schema())


CLASSIFICATION_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "classification", "schema": strict_schema(Classification), "strict": True},
}


def _status_error(exc: openai.APIStatusError) -> ModelError:
    status = exc.status_code
    message = f"HTTP {status}: {exc.message}"[:500]
    if status == 429:
        headers = exc.response.headers
        retry_after = None
        if (ms := headers.get("retry-after-ms")) is not None:
            try:
                retry_after = max(float(ms) / 1000, 0.0)
            except ValueError:
                retry_after = None
        if retry_after is None:
            retry_after = parse_retry_after(headers.get("retry-after"))
        return ModelError("rate_limited", message, retryable=True, retry_after_s=retry_after)
    if status >= 500 or status == 409:
        return ModelError("unavailable", message, retryable=True)
    if status == 408:
        return ModelError("timeout", message, retryable=True)
    if status in (400, 422):
        return ModelError("bad_response", message)
    return ModelError("unavailable", message)


def _translate(exc: BaseException) -> ModelError | None:
    """The :class:`ModelError` for a library or transport error, or None for anything else."""
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return ModelError("timeout", "no answer in time", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        cause = exc.__cause__ or exc
        return ModelError("unavailable", f"{type(cause).__name__}: {cause}"[:500], retryable=True)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        return ModelError("bad_response", f"{type(exc).__name__}: {exc}"[:500], retryable=True)
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return ModelError("unavailable", str(exc)[:500], retryable=True)
    return None


class _Wait(wait_base):
    """``Retry-After`` (capped at 30 s) after a 429 that sent one, else exponential backoff with jitter."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self._base = base_s
        self._cap = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, ModelError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, RETRY_AFTER_CAP_S)
        exponent = min(retry_state.attempt_number - 1, 32)
        return min(self._base * 2**exponent + random.uniform(0, self._base), self._cap)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


def _log_retry(retry_state: RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning(
        "ai.model_retry",
        attempt=retry_state.attempt_number,
        wait_s=round(retry_state.upcoming_sleep, 3),
        error=getattr(exc, "code", repr(exc)),
        message=getattr(exc, "message", None),
    )


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event (its ``data:`` lines joined), in order."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def _untransformed(messages: list[dict[str, str]]) -> dict[str, Any]:
    """The messages as ``extra_body``, which the library sends as they are.

    Passed as ``messages=`` they would first go through the library's recursive TypedDict
    transform, about a third of a worker's CPU per call at hundreds of calls in flight; ours are
    plain ``{"role", "content"}`` strings, which need none. ``extra_body`` keys replace the body's.
    """
    return {"messages": messages}


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _http_client(timeout_s: float) -> Any:
    """The HTTP client under ``AsyncOpenAI``: aiohttp's transport when the ``openai`` package has it.

    httpcore's pool (the default transport) scans every connection on each request and release,
    which costs O(connections) CPU per call: with hundreds of calls in flight it, not the model,
    limits one event loop. aiohttp's pool does not. Both get the same limits and timeouts.
    """
    limits = httpx.Limits(max_connections=HTTP_CONNECTION_LIMIT, max_keepalive_connections=HTTP_KEEPALIVE_LIMIT)
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)  # openai >= 1.93
    if TRANSPORT == "aiohttp" and aiohttp_client is not None:
        try:
            return aiohttp_client(timeout=timeout_s, limits=limits)
        except RuntimeError:  # openai without the aiohttp transport (its ``aiohttp`` extra)
            pass
    return openai.DefaultAsyncHttpxClient(timeout=timeout_s, limits=limits)


TRANSPORT = "aiohttp"


class ModelClient:
    """One process's connection to the model endpoint. Create and close it on the same event loop."""

    def __init__(
        self, settings: Settings, *, backoff_base_s: float = BACKOFF_BASE_S, backoff_cap_s: float = BACKOFF_CAP_S
    ) -> None:
        self._settings = settings
        self._model = settings.ai_model
        self._max_tokens = settings.ai_max_tokens
        self._max_attempts = settings.ai_max_attempts
        self._timeout_s = settings.ai_timeout_s
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._client: openai.AsyncOpenAI | None = None
        if settings.ai_configured:
            self._client = openai.AsyncOpenAI(
                base_url=settings.openai_base_url,
                api_key=settings.openai_api_key.get_secret_value() or "none",
                timeout=settings.ai_timeout_s,
                max_retries=0,
                http_client=_http_client(settings.ai_timeout_s),
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    def _require(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise ModelNotConfigured("OPENAI_BASE_URL and AI_MODEL must be set for the AI agent")
        return self._client

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[Any]]) -> Any:
        started = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=_Wait(*self._backoff),
            retry=retry_if_exception(_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    try:
                        return await attempt_once()
                    except Exception as exc:
                        if isinstance(exc, ModelError) or (error := _translate(exc)) is None:
                            raise
                        raise error from exc
        except ModelError as exc:
            exc.attempts = attempts
            exc.latency_ms = _elapsed_ms(started)
            raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def stream_reply(
        self, messages: list[dict[str, str]], on_delta: Callable[[str], Awaitable[None]]
    ) -> Completion:
        """Stream one reply, calling ``on_delta`` for each piece of text; answer the whole of it.

        An exception raised by ``on_delta`` is not the model's: it ends the call at once, unretried.
        """
        client = self._require()
        started = time.monotonic()

        async def attempt_once() -> Completion:
            # The raw event stream, parsed here: the library's typed chunks cost ~0.1 ms of CPU each
            # (one per token), which would make the CPU, not the model, limit a process's replies/s.
            request = client.chat.completions.with_streaming_response.create(
                model=self._model,
                messages=[],
                max_tokens=self._max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=_untransformed(messages),
            )
            parts: list[str] = []
            usage: dict[str, Any] = {}
            model = self._model
            done = False
            async with request as response:
                async for event in _sse_events(response.iter_lines()):
                    if event == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(event)
                    if not isinstance(chunk, dict):
                        raise ModelError("bad_response", f"unexpected chunk {event[:200]!r}", retryable=True)
                    if chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else error
                        raise ModelError("unavailable", f"error in the stream: {message}"[:500], retryable=True)
                    model = chunk.get("model") or model
                    usage = chunk.get("usage") or usage
                    for choice in (chunk.get("choices") or [])[:1]:
                        if text := (choice.get("delta") or {}).get("content"):
                            parts.append(text)
                            await on_delta(text)
            text = "".join(parts)
            if not done and not usage:
                raise ModelError("unavailable", "the stream ended before [DONE]", retryable=True)
            if not text.strip():
                raise ModelError("bad_response", "the model answered an empty reply", retryable=True)
            return Completion(
                text,
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                str(model),
                _elapsed_ms(started),
            )

        return await self._with_retries(attempt_once)

    async def classify(self, messages: list[dict[str, str]]) -> tuple[Classification, Completion]:
        """Classify with JSON-schema structured output; an answer outside the schema is retried."""
        client = self._require()
        started = time.monotonic()

        async def attempt_once() -> tuple[Classification, Completion]:
            try:
                async with asyncio.timeout(self._timeout_s):
                    answer = await client.chat.completions.create(
                        model=self._model,
                        messages=[],
                        extra_body=_untransformed(messages),
                        max_tokens=self._max_tokens,
                        temperature=0,
                        response_format=CLASSIFICATION_FORMAT,
                    )
            except TimeoutError:
                raise ModelError("timeout", f"no answer within {self._timeout_s} s", retryable=True) from None
            content = answer.choices[0].message.content if answer.choices else None
            try:
                result = Classification.model_validate_json(content or "")
            except ValidationError as exc:
                detail = f"{exc.error_count()} error(s): {content!r}"[:500]
                raise ModelError(
                    "bad_response", f"classification outside the schema, {detail}", retryable=True
                ) from None
            usage = answer.usage
            completion = Completion(
                content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                answer.model or self._model,
                _elapsed_ms(started),
            )
            return result, completion

        return await self._with_retries(attempt_once)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
