"""Command ids built from user-chosen parts: the same for the same parts, never shared by others."""

from __future__ import annotations

from schemas.commands import mark_read_command_id, scoped_id, send_command_ids, takeover_command_id


def test_colons_in_user_chosen_parts_cannot_make_two_ids_collide():
    assert send_command_ids("a:b", "c") != send_command_ids("a", "b:c")
    assert send_command_ids("a:b", "c")[1] != send_command_ids("a", "b:c")[1]  # the message ids too
    assert mark_read_command_id("u:r", "x", "m") != mark_read_command_id("u", "r:x", "m")
    assert takeover_command_id("op:1", "2") != takeover_command_id("op", "1:2")
    assert scoped_id("p", "ab", "") != scoped_id("p", "a", "b") != scoped_id("q", "a", "b")
    # A joined id and a digest id never coincide, whatever the parts.
    assert scoped_id("p", "x:y", "z") != scoped_id("p", "x", "y:z") == "p:x:y:z"


def test_ids_are_deterministic_readable_and_bounded():
    command_id, message_id = send_command_ids("alice", "c1")
    assert (command_id, message_id) == send_command_ids("alice", "c1")  # a retry is a duplicate
    assert command_id == "msg:alice:c1"  # as before the digest form: a retry across an upgrade is a duplicate
    hashed = send_command_ids("a:b", "c")[0]
    assert hashed.startswith("msg:") and len(hashed) == len("msg:") + 40 and ":" not in hashed[4:]
    assert mark_read_command_id("u", "r", "m").startswith("read:")
    assert takeover_command_id("op", "req").startswith("takeover:")
    assert len(send_command_ids("u" * 128, "c" * 128)[0]) <= 300
    unnamed, unnamed_id = send_command_ids("alice", None)
    assert unnamed == f"msg:{unnamed_id}"
