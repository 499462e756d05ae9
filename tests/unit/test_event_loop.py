"""EVENT_LOOP picks the loop every later loop of the process is made with."""

import asyncio

import pytest
import uvloop

from infra import event_loop
from infra.settings import Settings


@pytest.fixture
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


@pytest.mark.parametrize(("kind", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_the_policy_makes_every_new_loop(restore_policy, kind, loop_type):
    assert event_loop.install(kind) == kind
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, loop_type)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_uvloop_is_the_default_and_anything_else_is_refused(monkeypatch):
    secrets = {"jwt_secret": "s" * 32, "admin_token": "t" * 32}
    monkeypatch.delenv("EVENT_LOOP", raising=False)
    assert Settings(_env_file=None, **secrets).event_loop == "uvloop"
    monkeypatch.setenv("EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings(_env_file=None, **secrets)
