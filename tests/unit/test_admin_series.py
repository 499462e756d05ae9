"""The admin charts' windows and the dead-letter selection bodies."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest

from infra.admin_series import window
from schemas.admin import DeadLetterPurge, DeadLetterSelection

T = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("until", "minutes", "step", "start", "end"),
    [
        (T, 60, 60, T - dt.timedelta(hours=1), T),
        (T + dt.timedelta(seconds=59.9), 60, 60, T - dt.timedelta(hours=1), T),  # the bucket in progress is left out
        (T + dt.timedelta(seconds=30), 5, 30, T - dt.timedelta(minutes=4, seconds=30), T + dt.timedelta(seconds=30)),
        (T + dt.timedelta(minutes=7), 60, 600, T - dt.timedelta(hours=1), T),
    ],
)
def test_windows_end_at_the_last_whole_step(until, minutes, step, start, end):
    assert window(until, minutes, step) == (start, end)


def test_a_window_is_the_same_in_any_time_zone():
    local = T.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert window(local + dt.timedelta(seconds=10), 10, 60) == window(T, 10, 60)


def test_a_selection_is_either_ids_or_filters():
    assert DeadLetterSelection.model_validate({"messageIds": ["a", "b"]}).messageIds == ["a", "b"]
    assert DeadLetterSelection.model_validate({"queue": "chat", "limit": 3}).limit == 3
    assert DeadLetterSelection.model_validate({}).messageIds is None  # no filter: every dead message
    for bad in (
        {"messageIds": []},
        {"messageIds": ["a"], "actor": "x"},
        {"messageIds": [""]},
        {"limit": 0},
        {"limit": 501},
        {"messageIds": ["a"] * 501},
        {"other": 1},
    ):
        with pytest.raises(pydantic.ValidationError):
            DeadLetterSelection.model_validate(bad)


def test_purge_names_its_messages():
    assert DeadLetterPurge.model_validate({"messageIds": ["a"]}).messageIds == ["a"]
    for bad in ({}, {"messageIds": []}, {"queue": "chat"}):
        with pytest.raises(pydantic.ValidationError):
            DeadLetterPurge.model_validate(bad)
