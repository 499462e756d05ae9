"""Which chat partitions this worker process leads, so that a pool spreads them over its processes.

Each chat partition has one active consumer in the whole pool (RabbitMQ's single active consumer),
and RabbitMQ makes the first consumer to register the active one. Left alone, the process that
boots first would take every partition and apply every chat batch while the others stand by. So
process ``i`` of a pool of ``n`` registers at once on the partitions it leads (``k % n == i``) and
only after a short standby delay on the others, where it waits as the failover consumer.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass

from schemas.queues import CHAT_PARTITION_QUEUES

POOL_SIZE_ENV = "GATEKEEPER_POOL_PROCESSES"  # set by ``python -m workers`` for the processes it forks


@dataclass(frozen=True, slots=True)
class PoolSlot:
    index: int
    size: int

    def leads(self, partition: str) -> bool:
        return CHAT_PARTITION_QUEUES.index(partition) % self.size == self.index


def partitions_led(slot: PoolSlot) -> tuple[str, ...]:
    return tuple(p for p in CHAT_PARTITION_QUEUES if slot.leads(p))


def current_slot() -> PoolSlot | None:
    """This process's place in its pool, or None when it is not known (then it leads everything).

    dramatiq's CLI forks its worker processes first and in order, so their default
    ``multiprocessing`` names are ``Process-1`` … ``Process-n``.
    """
    try:
        size = int(os.environ.get(POOL_SIZE_ENV, ""))
    except ValueError:
        return None
    prefix, _, number = multiprocessing.current_process().name.rpartition("-")
    if prefix != "Process" or not number.isdigit() or not 1 <= int(number) <= size or size < 2:
        return None
    return PoolSlot(int(number) - 1, size)
