"""``python -m scripts.bench_chat``: the chat benchmark of docs/benchmarks.md on an isolated stack, with the CPU
every process group on the box spent per accepted message.

It creates a database and a RabbitMQ vhost of its own (``rabbitmqctl``: run it on the broker's
host), starts two ingress nodes and a chat pool from ``--tree`` (this checkout by default, or
another one to compare commits), drives them with this checkout's ``scripts.loadtest``, reads the
CPU time of its own processes, PostgreSQL, RabbitMQ and Redis from ``/proc`` before and after, and
removes what it made. It stops only the processes it started, by their pid.

    python -m scripts.bench_chat --label now
    python -m scripts.bench_chat --tree /tmp/before --label before -- --open-loop --rate 500

Arguments after ``--`` go to ``scripts.loadtest``. Do not run two at once: both would bind the
same ports. Compare commits in alternating runs within the hour; this box drifts by ±20 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from scripts.cpu_cap import CpuCap

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVICE_GROUPS = {  # process name prefix -> group, for the services shared with the box
    "postgres": "postgresql",
    "beam.smp": "rabbitmq",
    "erl_child_setup": "rabbitmq",
    "redis-server": "redis",
}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and what follows ``--`` (for the load generator)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    own, loadtest = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="python -m scripts.bench_chat", description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=ROOT, help="checkout whose ingress and workers run (its .venv)")
    p.add_argument("--label", default="run", help="names the result line and the log folder")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--processes", type=int, default=2, help="chat pool processes")
    p.add_argument("--threads", type=int, default=8, help="chat pool threads per process")
    p.add_argument(
        "--worker-cpus",
        type=float,
        default=None,
        help="cap the chat pool at this many CPUs (a control group's quota; needs root), e.g. to offer the"
        " workers twice what they apply without the load generator running out of CPU first",
    )
    p.add_argument("--base-port", type=int, default=18080, help="the two nodes listen here and on the next port")
    p.add_argument("--logs", type=Path, default=ROOT / ".run" / "bench")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    return p.parse_args(own), loadtest


def cpu_seconds(pid: str) -> tuple[int, float] | None:
    """(session id, user + system CPU seconds) of one process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_by_group(own: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each group: our processes by their session, the services by name."""
    totals: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        found = cpu_seconds(pid)
        if found is None:
            continue
        session, seconds = found
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        group = own.get(session) or next((g for prefix, g in SERVICE_GROUPS.items() if name.startswith(prefix)), None)
        if group is not None:
            totals[group] = totals.get(group, 0.0) + seconds
    return totals


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def consumers(vhost: str) -> int:
    """How many consumers the broker has on the vhost's queues."""
    out = subprocess.run(
        ["rabbitmqctl", "list_consumers", "-p", vhost, "-q", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


async def on_server(pg: str, statement: str) -> None:
    """Run one statement on the server's maintenance database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(f"{pg}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # dramatiq's parent forwards it to its own workers
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this script started for it


def summary_line(label: str, result: dict[str, Any], cpu_ms: dict[str, float]) -> str:
    th, lat = result["throughput"], result["latency_ms"]
    cpu = " ".join(f"{group} {ms:.2f}" for group, ms in sorted(cpu_ms.items()))
    return (
        f"{label}: accepted/s {th['accepted_per_s']:.0f} delivered/s {th['delivered_per_s']:.0f}"
        f" | ack p50/p99 ms {lat['ack']['p50'] or 0:.0f}/{lat['ack']['p99'] or 0:.0f}"
        f" delivery p99 ms {lat['delivery']['p99'] or 0:.0f}"
        f" | CPU ms per accepted message: {cpu}"
        f" | lost {result['integrity']['lost']} duplicated {result['integrity']['raw_duplicates']}"
        f" ledger {'OK' if result['ledger']['ok'] else 'MISMATCH'} outcomes {result['outcomes']}"
    )


def main(argv: list[str] | None = None) -> int:
    args, loadtest_args = parse_args(sys.argv[1:] if argv is None else argv)
    run = secrets.token_hex(3)
    name = f"gk_bench_{run}"
    log_dir = args.logs / f"{args.label}-{run}"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg}/{name}",
        "AMQP_URL": f"{args.amqp}/{name}",
        "REDIS_URL": args.redis,
        "KEY_PREFIX": f"gkbench{run}",
        "JWT_SECRET": secrets.token_hex(32),
        "ADMIN_TOKEN": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "RATE_LIMITS": "1000000/1s",  # the benchmark measures throughput, not the per-user limits
        "PYTHONUNBUFFERED": "1",
    }
    cap = CpuCap(name, args.worker_cpus) if args.worker_cpus else None
    asyncio.run(on_server(args.pg, f'CREATE DATABASE "{name}"'))
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    python = str(args.tree / ".venv" / "bin" / "python")
    procs: list[subprocess.Popen] = []
    groups: dict[int, str] = {}

    def spawn(command: list[str], log_name: str, group: str, capped: bool = False) -> None:
        with open(log_dir / f"{log_name}.log", "ab") as log:
            proc = subprocess.Popen(
                [python, *command],
                cwd=args.tree,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=cap.enter if capped and cap else None,
            )
        procs.append(proc)
        groups[proc.pid] = group  # its session id: every process it forks is counted with it

    try:
        pool = ["--queues", "chat", "--processes", str(args.processes), "--threads", str(args.threads)]
        spawn(["-m", "workers", *pool], "workers", "workers", capped=True)
        ports = [args.base_port, args.base_port + 1]
        for port in ports:
            spawn(["-m", "ingress", "--host", "127.0.0.1", "--port", str(port)], f"ingress-{port}", "ingress")
        deadline = time.monotonic() + 90
        while not all(map(healthy, ports)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                print(f"the stack did not come up; see {log_dir}", file=sys.stderr)
                return 1
            time.sleep(0.3)
        while consumers(name) < args.processes:  # a pool capped low takes a while to boot
            if time.monotonic() > deadline + 120 or procs[0].poll() is not None:
                print(f"the chat pool did not start consuming; see {log_dir}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        time.sleep(3)  # the pool's standby consumers register after 3 s

        before = cpu_by_group(groups)
        load = ["--nodes", "2", "--base-port", str(args.base_port), "--clients", str(args.clients)]
        load += ["--rooms", str(args.rooms), "--duration", str(args.duration), "--json", *loadtest_args]
        loadtest = subprocess.run(
            [sys.executable, "-m", "scripts.loadtest", *load], cwd=ROOT, env=env, capture_output=True, text=True
        )
        after = cpu_by_group(groups)
    finally:
        stop(procs)
        if cap:
            cap.remove()
        rabbitmqctl("delete_vhost", name)
        asyncio.run(on_server(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    (log_dir / "loadtest.out").write_text(loadtest.stdout + loadtest.stderr)
    try:
        result = json.loads(loadtest.stdout[loadtest.stdout.index("\n{") + 1 :])
    except ValueError:
        print(loadtest.stdout[-3000:] + loadtest.stderr[-3000:], file=sys.stderr)
        return 1
    accepted = max(result["throughput"]["accepted"], 1)
    cpu_ms = {group: (after.get(group, 0.0) - before.get(group, 0.0)) * 1000 / accepted for group in after}
    # The load generator's own report covers its sending window.
    loadgen_cpu_s = (result["loadgen_cpu_pct"] or 0) / 100 * result["window_s"]
    cpu_ms["loadgen"] = loadgen_cpu_s * 1000 / accepted
    print(summary_line(args.label, result, cpu_ms))
    return 0 if result["ledger"]["ok"] and result["integrity"]["lost"] == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
