"""The stack the browser tests drive: real ingress nodes with ``ALLOW_DEV_TOKENS=1`` and a worker
pool, and dev tokens minted through it."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from tests.support import isolation
from tests.support.processes import Proc, Processes


@dataclass
class WebStackOptions:
    queues: str = "chat"  # worker queues, space-separated, e.g. "chat billing outbound"
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every process
    nodes: int = 2
    worker_processes: int = 1
    worker_threads: int = 8


@dataclass
class WebStack:
    processes: Processes
    nodes: list[Proc]
    workers: Proc | None

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes if n.port is not None]

    def url(self, path: str = "/", node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"


def start_web_stack(stack_env: dict[str, str], options: WebStackOptions) -> WebStack:
    """Real ingress nodes and a worker pool, dev tokens on; call ``.processes.stop_all()`` when done."""
    procs = Processes(
        {
            **stack_env,
            "ALLOW_DEV_TOKENS": "1",
            "RATE_LIMITS": "200/1s",
            "TWILIO_AUTH_TOKEN": isolation.TWILIO_AUTH_TOKEN,
            "META_APP_SECRET": isolation.META_APP_SECRET,
            "META_VERIFY_TOKEN": isolation.META_VERIFY_TOKEN,
            "PUBLIC_BASE_URL": isolation.PUBLIC_BASE_URL,
            **options.env,
        }
    )
    try:
        nodes = [procs.ingress() for _ in range(options.nodes)]
        workers = (
            procs.workers(options.queues, processes=options.worker_processes, threads=options.worker_threads)
            if options.queues
            else None
        )
    except BaseException:
        procs.stop_all()
        raise
    return WebStack(procs, nodes, workers)


async def dev_token(
    http: aiohttp.ClientSession,
    stack: WebStack,
    user_id: str,
    name: str | None = None,
    role: str = "user",
    tenant: str | None = None,
) -> str:
    """A token from the stack's ``/api/dev/token``, to skip the sign-in form."""
    body: dict[str, str] = {"userId": user_id, "role": role}
    if name:
        body["name"] = name
    if tenant:
        body["tenant"] = tenant
    async with http.post(stack.url("/api/dev/token"), json=body) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["token"]
