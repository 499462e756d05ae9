"""docs/socket-events.md is generated from the code and must not drift from it."""

from __future__ import annotations

import difflib

import pytest

from scripts import gen_socket_events_doc as gen


@pytest.fixture(scope="module")
def page() -> str:
    return gen.render()


def test_the_committed_page_is_what_the_code_gives(page: str) -> None:
    committed = gen.OUTPUT.read_text(encoding="utf-8") if gen.OUTPUT.exists() else ""
    if committed != page:
        diff = difflib.unified_diff(
            committed.splitlines(), page.splitlines(), "docs/socket-events.md (committed)", "generated", lineterm=""
        )
        shown = "\n".join(list(diff)[:60])
        pytest.fail(f"docs/socket-events.md is out of date: run `{gen.COMMAND}` and commit the result.\n{shown}")


def test_every_bound_event_is_found() -> None:
    """The AST reading finds ingress's event tables (a rewrite of them must not empty the page)."""
    events = {e.event: e for e in gen.client_events()}
    for name in ("joinRoom", "leaveRoom", "sendMessage", "typing-start", "mark-read", "sendTip", "initiate-call"):
        assert name in events, f"{name} not found in ingress's event tables"
    assert events["sendMessage"].model.__name__ == "SendMessage"
    assert events["sendMessage"].handler == "ChatSockets.send_message"
    assert events["typing-stop"].handler == "ChatSockets.typing(typing=False)"


def test_the_page_carries_the_models_constraints(page: str) -> None:
    from schemas.socket_events import MAX_MESSAGE_CHARS

    assert f"| `message` | string | yes | 1–{MAX_MESSAGE_CHARS} characters; must not contain NUL characters |" in page
    assert "| `clientTipId` | string | yes | 1–128 characters; must not contain NUL characters; " in page


def test_every_emitted_event_is_listed() -> None:
    """SERVER_EVENTS names each event the code emits, and nothing else (render() refuses otherwise)."""
    emitted = gen.emitted_events()
    assert set(emitted) == set(gen.SERVER_EVENTS)
    assert "r/<roomId>" in emitted["newMessage"].targets
    assert emitted["serverShutdown"].targets == {"the socket"}


def test_check_mode_reports_a_stale_page(tmp_path, capsys) -> None:
    stale = tmp_path / "socket-events.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert gen.COMMAND in capsys.readouterr().err
    assert stale.read_text(encoding="utf-8") == "# old\n"
