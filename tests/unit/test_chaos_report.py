"""The chaos run's accounting (scripts/chaos.py): a missing reception, a second one and a charge
that does not match storage are each caught, so the suite can fail."""

from __future__ import annotations

from schemas.commands import send_command_ids
from scripts.chaos import GRANT_CREDITS, ChaosRun, Phase, Snapshot, parse_args
from scripts.chaos_stack import ChaosStack, StackConfig


def make_run(clients: int = 2) -> ChaosRun:
    run = ChaosRun(parse_args(["--clients", str(clients), "--rooms", "1"]), ChaosStack(StackConfig()))
    run.timeline.phases.append(Phase("workers-kill", 0.0, fault_at=1.0, fault_ended=2.0, ended=3.0))
    return run


def account(user: str, words: int, charged: int) -> dict:
    return {
        "account_id": f"user:{user}",
        "credits": GRANT_CREDITS - charged,
        "words_used_total": words,
        "credits_charged_total": charged,
        "posted": charged,
    }


def one_message(run: ChaosRun) -> tuple[str, Snapshot]:
    sender = run.members[0]
    run.accepted(sender, "c1")
    _, message_id = send_command_ids(sender.user_id, "c1")
    stored = {message_id: (sender.room_id, sender.user_id, 12)}
    accounts = [account(sender.user_id, 12, 1), account(run.members[1].user_id, 0, 0)]
    return message_id, Snapshot(stored, accounts)


def test_a_message_every_member_received_once_is_clean():
    run = make_run()
    message_id, snapshot = one_message(run)
    for member in run.members:
        member.received[message_id] = 1
    report = run.report(snapshot)
    assert report["guarantees_ok"] and report["phases"][0]["lost"] == 0


def test_a_member_that_never_received_a_stored_message_counts_it_lost():
    run = make_run()
    message_id, snapshot = one_message(run)
    run.members[0].received[message_id] = 1
    report = run.report(snapshot)
    assert report["phases"][0]["lost"] == 1 and report["missing_receptions"] == 1
    assert not report["guarantees_ok"]


def test_an_acked_message_missing_from_storage_is_lost():
    run = make_run()
    _, snapshot = one_message(run)
    report = run.report(Snapshot({}, snapshot.accounts))
    assert report["phases"][0]["lost"] == 1 and not report["guarantees_ok"]


def test_a_message_received_twice_by_one_client_is_a_duplicate():
    run = make_run()
    message_id, snapshot = one_message(run)
    run.members[0].received[message_id] = 1
    run.members[1].received[message_id] = 2
    report = run.report(snapshot)
    assert report["phases"][0]["duplicated"] == 1 and not report["guarantees_ok"]


def test_a_charge_that_does_not_match_the_stored_words_is_a_ledger_mismatch():
    run = make_run()
    message_id, snapshot = one_message(run)
    for member in run.members:
        member.received[message_id] = 1
    snapshot.accounts[0]["credits_charged_total"] = 2
    report = run.report(snapshot)
    assert not report["ledger"]["ok"] and not report["guarantees_ok"]
    assert report["ledger"]["mismatches"][0]["user"] == run.members[0].user_id
