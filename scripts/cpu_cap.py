"""A CPU quota for the processes a benchmark starts, through a Linux control group of its own.

An operator sizes a worker pool by the CPU it gets (a container's CPU limit); a benchmark that
wants to overload "the workers" at twice their rate needs workers slower than its own load
generator, which on a small box shares the same cores. ``CpuCap`` makes a control group with a
CFS quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), moves a child into it before it
executes (``preexec_fn``, so every process it forks is capped with it) and removes the group after.
It needs write access to ``/sys/fs/cgroup`` (root, or a delegated subtree).
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class CpuCapUnavailable(RuntimeError):
    """This machine does not let us make a CPU-limited control group."""


class CpuCap:
    """A control group named ``name`` allowed ``cpus`` CPUs' worth of time per period."""

    def __init__(self, name: str, cpus: float) -> None:
        most = os.cpu_count() or 1
        if not 0.01 <= cpus <= most:
            raise ValueError(f"cpus must be between 0.01 and {most}")
        self.quota_us = int(cpus * PERIOD_US)
        v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
        self.path = CGROUP_ROOT / name if v2 else CGROUP_ROOT / "cpu" / name
        try:
            self.path.mkdir()
            if v2:
                (self.path / "cpu.max").write_text(f"{self.quota_us} {PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        except OSError as exc:
            self.remove()
            raise CpuCapUnavailable(f"cannot make a CPU-limited control group at {self.path}: {exc}") from exc

    def enter(self) -> None:
        """Move the calling process into the group (use as ``preexec_fn``)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Delete the group; it must be empty, i.e. its processes have ended."""
        try:
            self.path.rmdir()
        except OSError:
            pass
