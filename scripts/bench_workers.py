"""Worker pools that a benchmark starts for itself, and stops by its own pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], queue: str, threads: int, log_path: Path) -> subprocess.Popen:
    """One worker process for ``queue``, in a session of its own, logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        args = ["-m", "workers", "--queues", queue, "--processes", "1", "--threads", str(threads)]
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen) -> None:
    """Only the process group this script started, by its pid."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # dramatiq's main process stops its worker gracefully
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: exactly the tree this script started
        proc.wait(timeout=30)
