"""A PostgreSQL server of one's own, for a run that must really stop and start it.

The chaos suite restarts PostgreSQL (``pg_ctl stop -m fast``, then ``start``) under load. Doing that
to the machine's shared server would break everyone else's work, so ``OwnPostgres`` makes a
cluster in a temporary directory (``initdb``, trust authentication on loopback), runs it on a free
port, and removes it at the end. Every server process is the child of the postmaster this class
started, and ``pg_ctl`` ends it through that postmaster's pid file: nothing is ended by name.

Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVER_USER = "postgres"


def _binary_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, or Debian's versioned directory (newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def available() -> str | None:
    """None when an own server can be made here, else why not."""
    if _binary_dir() is None:
        return "initdb and pg_ctl were not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"run as root without a {SERVER_USER!r} user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnPostgres:
    def __init__(self) -> None:
        why_not = available()
        if why_not:
            raise RuntimeError(f"cannot run a PostgreSQL server of our own: {why_not}")
        bin_dir = _binary_dir()
        assert bin_dir is not None  # available() just found it
        self.bin = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gk-own-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_server_user = os.geteuid() == 0

    @property
    def url(self) -> str:
        """The server's URL without a database, as ``--pg`` takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, tool: str, *args: str, timeout_s: float = 120) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    async def start(self) -> None:
        """Make the cluster on the first call, then start the server and wait until it accepts."""
        if not self.data.exists():
            if self._as_server_user:
                shutil.chown(self.dir, user=SERVER_USER)
            await asyncio.to_thread(
                self._run, "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    async def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: fast rolls back open transactions and closes every connection."""
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            try:
                await self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
