"""Every module of ours imports on its own, first, in a fresh interpreter: no import circles.

A circle hides while something else imports the modules in the right order (``workers.broker``
once imported every actor module, which imported ``resources`` back from it, so
``python -c "import workers.chat"`` alone failed). Each module is imported in a forked child of
a process that has loaded only third-party packages, so it is the first of ours to load there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support.processes import ROOT

PACKAGES = ("domain", "schemas", "infra", "ingress", "workers", "scripts")
ENV = {
    "PATH": "/usr/bin:/bin",
    "ADMIN_TOKEN": "unit-test-admin-token-0123456789",
    "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef",
    "SENTRY_DSN": "",
    "LOG_LEVEL": "ERROR",
}
# Loaded once in the parent to keep the children fast; none of them is ours.
THIRD_PARTY = (
    "aiohttp",
    "asyncpg",
    "dramatiq",
    "pydantic",
    "pydantic_settings",
    "redis",
    "socketio",
    "structlog",
    "web3",
)

SCRIPT = f"""
import importlib, json, os, sys
for name in {THIRD_PARTY!r}:
    importlib.import_module(name)
ours = {PACKAGES!r}
assert not any(m.split(".")[0] in ours for m in sys.modules), "the parent must not load our modules"
modules = []
for package in ours:
    modules.append(package)
    # Listed from the files, not pkgutil.walk_packages: that imports each subpackage to walk it.
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(folder, d, "__init__.py")))
        prefix = folder.replace(os.sep, ".")
        if folder != package:
            modules.append(prefix)
        modules += [f"{{prefix}}.{{f[:-3]}}" for f in sorted(files) if f.endswith(".py") and not f.startswith("_")]
failures = {{}}
for name in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code, text = 0, ""
        except BaseException as exc:
            code, text = 1, f"{{type(exc).__name__}}: {{exc}}"
        os.write(write, text.encode()[:4000])
        os._exit(code)
    os.close(write)
    text = os.read(read, 4000).decode()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[name] = text or f"exit status {{status}}"
print(json.dumps({{"modules": modules, "failures": failures}}))
"""


def test_every_module_imports_on_its_own():
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "workers.chat" in report["modules"] and "workers.broker" in report["modules"]
    assert len(report["modules"]) > 150
    assert report["failures"] == {}
