"""Which chat partitions each process of a pool leads (workers/pool_slot.py)."""

import multiprocessing

import pytest

from schemas.queues import CHAT_PARTITION_QUEUES
from workers.pool_slot import POOL_SIZE_ENV, PoolSlot, current_slot, partitions_led


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_every_partition_is_led_by_exactly_one_process_of_the_pool(size):
    led = [p for index in range(size) for p in partitions_led(PoolSlot(index, size))]
    assert sorted(led) == sorted(CHAT_PARTITION_QUEUES)


def test_two_processes_lead_two_partitions_each():
    assert partitions_led(PoolSlot(0, 2)) == ("chat.p0", "chat.p2")
    assert partitions_led(PoolSlot(1, 2)) == ("chat.p1", "chat.p3")


@pytest.fixture
def process_name():
    process = multiprocessing.current_process()
    original = process.name
    yield lambda name: setattr(process, "name", name)
    process.name = original


@pytest.mark.parametrize(
    ("size", "name", "slot"),
    [
        ("2", "Process-1", PoolSlot(0, 2)),
        ("2", "Process-2", PoolSlot(1, 2)),
        ("3", "Process-3", PoolSlot(2, 3)),
        ("2", "Process-3", None),  # not one of the pool's worker processes (a fork process)
        ("1", "Process-1", None),  # a pool of one leads everything
        ("2", "MainProcess", None),
        ("", "Process-1", None),  # not started by ``python -m workers``
        ("two", "Process-1", None),
    ],
)
def test_a_process_finds_its_slot_from_its_name_and_the_pool_size(monkeypatch, process_name, size, name, slot):
    monkeypatch.setenv(POOL_SIZE_ENV, size)
    process_name(name)
    assert current_slot() == slot
