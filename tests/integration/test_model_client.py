"""The model adapter with the real ``openai`` client against the local fake endpoint: no mocks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from infra.settings import Settings
from schemas.ai import Classification
from tests.support.fake_openai import DEFAULT_CLASSIFICATION, FakeOpenAI, Reply
from workers.providers import model
from workers.providers.model import ModelClient, ModelError, ModelNotConfigured

API_KEY = "sk-test-" + uuid.uuid4().hex
MESSAGES = [
    {"role": "system", "content": "Eres AgenteIA, un asistente de ventas."},
    {"role": "user", "content": "¿Cuánto cuesta el plan anual para cinco personas?"},
]


@pytest.fixture(autouse=True)
def _ledger_invariants_after_each_test():
    """These tests move no money: no database needed (overrides the integration-wide check)."""
    yield


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=API_KEY)
    await server.start()
    yield server
    await server.close()


def make_settings(fake: FakeOpenAI, **overrides) -> Settings:
    values = {
        "jwt_secret": "j" * 32,
        "admin_token": "a" * 32,
        "openai_base_url": fake.url,
        "openai_api_key": API_KEY,
        "ai_model": "fake-model",
        "ai_timeout_s": 5.0,
        "ai_max_attempts": 3,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(params=["aiohttp", "httpx"])
async def make_client(request, fake: FakeOpenAI, monkeypatch) -> AsyncIterator:
    """Clients on either HTTP transport under ``AsyncOpenAI`` (see ``model._http_client``)."""
    monkeypatch.setattr(model, "TRANSPORT", request.param)
    clients: list[ModelClient] = []

    def make(**overrides) -> ModelClient:
        # Short backoff: the policy's shape is what is tested, not its 0.5 s base.
        client = ModelClient(make_settings(fake, **overrides), backoff_base_s=0.05, backoff_cap_s=0.2)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_a_reply_streams_its_deltas_in_order_and_returns_text_and_usage(fake, make_client):
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    completion = await make_client(ai_max_tokens=256).stream_reply(MESSAGES, on_delta)

    expected = fake.default_reply({"messages": MESSAGES})
    assert len(deltas) > 1
    assert "".join(deltas) == completion.text == expected
    assert completion.prompt_tokens == sum(len(m["content"].split()) for m in MESSAGES)
    assert completion.completion_tokens == len(expected.split())
    assert completion.model == "fake-model"
    assert completion.latency_ms >= 0
    [request] = fake.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["max_tokens"] == 256
    assert request.body["messages"] == MESSAGES


async def test_a_classification_is_parsed_from_structured_output(fake, make_client):
    result, completion = await make_client().classify(MESSAGES)

    assert result == Classification.model_validate(DEFAULT_CLASSIFICATION)
    assert json.loads(completion.text) == DEFAULT_CLASSIFICATION
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    [request] = fake.requests
    assert request.body["temperature"] == 0
    assert "stream" not in request.body or request.body["stream"] is False
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"]) == sorted(Classification.model_fields)


async def test_a_429_waits_its_retry_after_then_succeeds(fake, make_client):
    fake.script(Reply.rate_limited(retry_after=1))

    completion = await make_client().stream_reply(MESSAGES, _ignore)

    assert completion.text == fake.default_reply({"messages": MESSAGES})
    first, second = fake.requests
    assert first.status == 429 and second.status == 200
    assert second.started - first.finished >= 0.95
    assert completion.latency_ms >= 950


async def test_a_500_then_success(fake, make_client):
    fake.script(Reply.server_error())

    result, _ = await make_client().classify(MESSAGES)

    assert result.intent == DEFAULT_CLASSIFICATION["intent"]
    assert [r.status for r in fake.requests] == [500, 200]


async def test_exhausted_attempts_raise_the_last_code(fake, make_client):
    fake.script(Reply.server_error(), Reply.server_error(503), Reply.rate_limited(), Reply.ok())

    with pytest.raises(ModelError) as caught:
        await make_client(ai_max_attempts=3).stream_reply(MESSAGES, _ignore)

    assert caught.value.code == "rate_limited"
    assert caught.value.attempts == 3
    assert caught.value.latency_ms > 0
    assert len(fake.requests) == 3


async def test_a_slow_answer_is_a_timeout(fake, make_client):
    fake.script(Reply.slow(3), Reply.slow(3))

    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await make_client(ai_timeout_s=0.3, ai_max_attempts=2).stream_reply(MESSAGES, _ignore)

    assert caught.value.code == "timeout"
    assert caught.value.attempts == 2
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 2.5


async def test_a_slow_classification_is_a_timeout(fake, make_client):
    fake.script(Reply.slow(3))

    with pytest.raises(ModelError) as caught:
        await make_client(ai_timeout_s=0.3, ai_max_attempts=1).classify(MESSAGES)

    assert caught.value.code == "timeout" and caught.value.attempts == 1


async def test_malformed_json_is_retried_and_the_next_answer_parsed(fake, make_client):
    fake.script(Reply.malformed_json())

    result, _ = await make_client().classify(MESSAGES)

    assert result == Classification.model_validate(DEFAULT_CLASSIFICATION)
    assert len(fake.requests) == 2


async def test_an_answer_outside_the_schema_is_a_bad_response(fake, make_client):
    wrong = json.dumps({**DEFAULT_CLASSIFICATION, "lead": "lukewarm"})
    fake.script(Reply.ok(text=wrong), Reply.ok(text=wrong))

    with pytest.raises(ModelError) as caught:
        await make_client(ai_max_attempts=2).classify(MESSAGES)

    assert caught.value.code == "bad_response" and caught.value.attempts == 2


async def test_a_refused_request_is_not_retried(fake, make_client):
    fake.script(Reply.error(400, "This model's maximum context length is 8192 tokens.", code="context_length_exceeded"))

    with pytest.raises(ModelError) as caught:
        await make_client().stream_reply(MESSAGES, _ignore)

    assert caught.value.code == "bad_response" and caught.value.attempts == 1
    assert len(fake.requests) == 1


async def test_a_wrong_key_is_unavailable_and_not_retried(fake, make_client):
    with pytest.raises(ModelError) as caught:
        await make_client(openai_api_key="sk-wrong").classify(MESSAGES)

    assert caught.value.code == "unavailable" and caught.value.attempts == 1
    assert [r.status for r in fake.requests] == [401]


async def test_a_stream_cut_midway_restarts_the_completion(fake, make_client):
    fake.script(Reply.cut_stream())
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    completion = await make_client().stream_reply(MESSAGES, on_delta)

    expected = fake.default_reply({"messages": MESSAGES})
    assert completion.text == expected
    assert len(fake.requests) == 2
    # The first attempt's deltas were sent, then the whole reply again from its start.
    assert "".join(deltas).endswith(expected) and len("".join(deltas)) > len(expected)


async def test_an_on_delta_failure_is_not_retried(fake, make_client):
    async def on_delta(text: str) -> None:
        raise RuntimeError("redis down")

    with pytest.raises(RuntimeError, match="redis down"):
        await make_client().stream_reply(MESSAGES, on_delta)
    assert len(fake.requests) == 1


async def test_not_configured_raises_without_any_request(fake, make_client):
    client = make_client(openai_base_url="")

    assert not client.configured
    with pytest.raises(ModelNotConfigured):
        await client.stream_reply(MESSAGES, _ignore)
    with pytest.raises(ModelNotConfigured):
        await client.classify(MESSAGES)
    assert fake.requests == []


async def _ignore(text: str) -> None:
    return None
