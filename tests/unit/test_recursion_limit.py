"""The recursion limit stays sane in every process, whatever a dependency sets (infra/recursion_limit.py).

py_ecc (via eth_account) sets it to 100,000, and then the json parser overflows the C stack on a
deep document: SIGSEGV instead of RecursionError. Each check runs in a fresh interpreter, as the
entry points do, and ends by parsing such a document there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from infra.recursion_limit import SAFE_RECURSION_LIMIT
from tests.support.processes import ROOT

PACKAGES = ("domain", "schemas", "infra", "ingress", "workers", "scripts")
ENV = {
    "PATH": "/usr/bin:/bin",
    "ADMIN_TOKEN": "unit-test-admin-token-0123456789",
    "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef",
    "SENTRY_DSN": "",
}
# Survives only with a sane limit: RecursionError, where a raised limit crashes the process.
DEEP_PARSE = """
try:
    json.loads("[" * 100_000)
except RecursionError:
    pass
"""


def run(script: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + DEEP_PARSE + "print(json.dumps(report))"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_module_imported_then_pinned_leaves_a_sane_limit():
    report = run(
        f"""
        import importlib, json, pkgutil, sys
        modules = 0
        for name in {PACKAGES!r}:
            package = importlib.import_module(name)
            for info in pkgutil.walk_packages(package.__path__, name + "."):
                importlib.import_module(info.name)
                modules += 1
        raised = sys.getrecursionlimit()
        from infra.recursion_limit import pin_recursion_limit
        pinned = pin_recursion_limit()
        import py_ecc
        importlib.reload(py_ecc)  # a dependency that raises it again after the pin (a lazy import)
        report = {{"modules": modules, "raised": raised, "pinned": pinned, "after": sys.getrecursionlimit()}}
        """
    )
    assert report["modules"] > 100
    assert report["raised"] > SAFE_RECURSION_LIMIT  # the hazard is real: some import raised it
    assert report["pinned"] == SAFE_RECURSION_LIMIT
    assert report["after"] == SAFE_RECURSION_LIMIT


def test_the_ingress_entry_point_ends_with_a_sane_limit():
    report = run(
        """
        import json, sys
        from ingress.__main__ import build
        build(["--port", "0"])  # what python -m ingress does before serving
        report = {"limit": sys.getrecursionlimit()}
        """
    )
    assert report["limit"] == SAFE_RECURSION_LIMIT
