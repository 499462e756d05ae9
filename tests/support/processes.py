"""Start real ingress and worker processes; stop only those we started, by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "artifacts" / "logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the whole process group this test started (dramatiq forks children)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            # Only the main process: dramatiq's parent forwards it to its workers, which then
            # stop gracefully; a second signal would make them be killed instead.
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.popen.returncode


@dataclass
class Processes:
    env: dict[str, str]
    started: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}-{time.strftime('%H%M%S')}-{len(self.started)}.log"
        log_file = open(log_path, "wb")
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so we can signal exactly our tree
        )
        log_file.close()
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        return proc

    def ingress(self, port: int | None = None, *, require_healthy: bool = True, **extra_env: str) -> Proc:
        port = port or free_port()
        proc = self._spawn(
            f"ingress-{port}",
            ["-m", "ingress", "--host", "127.0.0.1", "--port", str(port)],
            {"NODE_ID": f"node-{port}", **extra_env},
        )
        proc.port = port
        wait_http(f"http://127.0.0.1:{port}/health", proc, require_ok=require_healthy)
        return proc

    def workers(self, queues: str = "chat", processes: int = 1, threads: int = 4, **extra_env: str) -> Proc:
        proc = self._spawn(
            f"workers-{queues}",
            ["-m", "workers", "--queues", *queues.split(), "--processes", str(processes), "--threads", str(threads)],
            extra_env,
        )
        wait_for_log(proc, "Worker process is ready", count=processes)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.terminate(timeout=15)
        self.started.clear()


def wait_http(url: str, proc: Proc, timeout: float = 30, require_ok: bool = True) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError:
            if not require_ok:
                return  # serving, but degraded: what the caller asked for
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} not healthy after {timeout}s:\n{proc.log()[-3000:]}")


def wait_for_log(proc: Proc, needle: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-3000:]}")
        if proc.log().count(needle) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name}: {needle!r} not seen {count}x in {timeout}s:\n{proc.log()[-3000:]}")
