"""``python -m scripts.up``: run two ingress nodes and a chat worker pool on this machine.

It stops only the processes it started, by pid, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra import db
from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], log_dir: Path, name: str) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return proc


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            pass  # up but degraded: keep waiting for its dependencies
        except OSError:
            pass
        time.sleep(0.3)
    return False


def chain_where(settings: Settings) -> str:
    if settings.web3_provider_url:
        return f"node {settings.web3_provider_url}"
    return f"embedded dev chain served at http://{settings.chain_rpc_host}:{settings.chain_rpc_port}"


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            # The main process only: dramatiq's parent forwards SIGTERM to its workers, which
            # finish what they hold; signalling the whole group would make it kill them instead.
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.up", description=__doc__)
    parser.add_argument("--ports", type=int, nargs="+", default=[8080, 8081])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--logs", type=Path, default=ROOT / ".run")
    args = parser.parse_args()

    settings = Settings()
    applied = asyncio.run(db.migrate(settings.database_url))
    print(f"database ready ({', '.join(applied) or 'up to date'})")
    args.logs.mkdir(exist_ok=True)

    procs = [
        spawn(
            ["-m", "workers", "--queues", "chat", "--processes", str(args.processes), "--threads", str(args.threads)],
            args.logs,
            "workers-chat",
        ),
        # Provider calls wait on the network: one process, many threads, many sends in flight.
        spawn(
            ["-m", "workers", "--queues", "outbound", "--processes", "1", "--threads", "128"],
            args.logs,
            "workers-outbound",
        ),
        # Model calls, likewise: each thread awaits one call on the process's event loop.
        spawn(["-m", "workers", "--queues", "ai", "--processes", "1", "--threads", "256"], args.logs, "workers-ai"),
        # Credits coming in and moving between people (Stripe, LemonSqueezy, plans, tips, calls).
        spawn(
            ["-m", "workers", "--queues", "billing", "--processes", "1", "--threads", "16"],
            args.logs,
            "workers-billing",
        ),
        # BEZ deposits: the watcher (hosting the embedded dev chain unless WEB3_PROVIDER_URL is set)
        # publishes confirmed transfers to the treasury; the chain pool credits them.
        spawn(["-m", "workers.chain_watcher"], args.logs, "chain-watcher"),
        spawn(["-m", "workers", "--queues", "chain", "--processes", "1", "--threads", "4"], args.logs, "workers-chain"),
    ]
    for port in args.ports:
        procs.append(
            spawn(["-m", "ingress", "--host", settings.host, "--port", str(port)], args.logs, f"ingress-{port}")
        )
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for port, proc in zip(args.ports, procs[-len(args.ports) :], strict=True):
            if not wait_healthy(port, proc):
                print(f"ingress on port {port} did not become healthy; see {args.logs}/ingress-{port}.log")
                return 1
        urls = "  ".join(f"http://{settings.host}:{p}" for p in args.ports)
        print(
            f"\nGatekeeper is running.\n"
            f"  Socket.IO / HTTP: {urls}\n"
            f"  Web:              chat http://{settings.host}:{args.ports[0]}/"
            f"  console http://{settings.host}:{args.ports[0]}/console"
            f"{'' if settings.allow_dev_tokens else '  (ALLOW_DEV_TOKENS=0: paste a JWT to sign in)'}\n"
            f"  Chat workers:     {args.processes} processes x {args.threads} threads on queue 'chat'\n"
            f"  Outbound workers: 1 process x 128 threads on queue 'outbound'\n"
            f"  AI workers:       1 process x 256 threads on queue 'ai' (OPENAI_BASE_URL, AI_MODEL)\n"
            f"  Billing workers:  1 process x 16 threads on queue 'billing' (packs, plans, tips, calls)\n"
            f"  Chain watcher:    BEZ deposits to the treasury -> queue 'chain' (1 process x 4 threads);\n"
            f"                    {chain_where(settings)}\n"
            f"  Logs:             {args.logs}/\n\n"
            f"Mint a dev token:   .venv/bin/python -m scripts.token alice --name Alice\n"
            f"Give credits:       curl -X POST -H 'x-admin-token: <ADMIN_TOKEN from .env>' \\\n"
            f"                      -H 'content-type: application/json' -d "
            f'\'{{"credits": 5, "reason": "dev", "idempotencyKey": "dev-1"}}\' \\\n'
            f"                      http://{settings.host}:{args.ports[0]}/api/credits/grant/alice\n"
            f"Connect:            io('http://{settings.host}:{args.ports[0]}', {{auth: {{token}}}})\n\n"
            f"Deposit test BEZ:   .venv/bin/python -m scripts.chain account\n"
            f"                    .venv/bin/python -m scripts.chain link alice --key <private key>\n"
            f"                    .venv/bin/python -m scripts.chain mint <address> 100\n"
            f"                    .venv/bin/python -m scripts.chain transfer 10 --key <private key>\n\n"
            f"Ctrl-C stops everything started here."
        )
        while not stopping:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"a process exited with {proc.returncode}; stopping (see {args.logs}/)")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop(procs)


if __name__ == "__main__":
    sys.exit(main())
