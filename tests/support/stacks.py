"""The end-to-end stack (real ingress nodes and a worker pool) and the one-node stand-in helpers accept."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.processes import Proc, Processes


@dataclass
class Stack:
    processes: Processes
    nodes: list[Proc]
    workers: Proc

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def url(self, path: str, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"


class OneNode:
    """One node's URLs, where a helper such as ``grant`` or ``stats`` takes a stack."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def start_billing_worker(stack: Stack) -> Iterator[Proc]:
    """A billing pool for one test module, stopped (by pid) when the module ends."""
    proc = stack.processes.workers("billing", processes=1, threads=4)
    try:
        yield proc
    finally:
        proc.terminate(timeout=15)
        stack.processes.started.remove(proc)
