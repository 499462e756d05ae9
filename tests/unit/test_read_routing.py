"""Which code may read from DATABASE_READ_URL's replica, checked on the source itself.

A replica lags. Only GET endpoints whose answer may be a moment old use ``state.reads``; the
ledger's writes (grants, resets, tenant grants, charges in the workers) and everything that
decides one always go to ``state.pool``, the primary. A new use of ``.reads`` has to be added
to READERS here on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The only functions that may take a pooled connection from the read pool, and their routes.
READERS = {
    ("history_api.py", "credit_history"): "/api/credits/history/{userId}",
    ("http_api.py", "credit_stats"): "/api/credits/stats/{userId}",
    ("plans_api.py", "plan_usage_of"): "/api/plans/usage/{userId}",
    ("analytics_api.py", "conversation_analytics"): "/api/analytics/conversations",
    ("analytics_api.py", "intent_analytics"): "/api/analytics/intents",
    ("analytics_api.py", "_prepare"): None,  # the analytics handlers' shared tenant check
    ("conversations_api.py", "list_conversations"): "/api/tenants/{tenantId}/conversations",
    ("admin_api.py", "series"): "/api/admin/series",
    ("admin_api.py", "_with_inbox_errors"): None,  # the dead-letter list's stored errors
}
WRITES = ("grant", "reset", "create", "update", "set_plan", "apply", "charge", "transfer", "link")


def _functions(path: Path) -> list[ast.AsyncFunctionDef | ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _uses_reads(fn: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("reads", "read_pool") for n in ast.walk(fn))


def _route(fn: ast.AsyncFunctionDef | ast.FunctionDef) -> tuple[str, str] | None:
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.args:
            arg = deco.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return deco.func.attr, arg.value
    return None


def test_only_listed_get_endpoints_read_from_the_read_pool():
    users: dict[tuple[str, str], tuple[str, str] | None] = {}
    for path in sorted((ROOT / "ingress").rglob("*.py")):
        if path.name == "state.py":
            continue
        for fn in _functions(path):
            if _uses_reads(fn):
                users[(path.name, fn.name)] = _route(fn)
    assert set(users) == set(READERS)
    for key, path in READERS.items():
        assert users[key] == (("get", path) if path else None), key


def test_ledger_writes_in_ingress_take_the_primary_pool():
    calls = 0
    for path in sorted((ROOT / "ingress").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in ("grants", "ledger", "tenants"):
                if node.func.attr.startswith(WRITES):
                    calls += 1
                    first = node.args[0]
                    assert not (isinstance(first, ast.Attribute) and first.attr in ("reads", "read_pool")), (
                        f"{path.name}:{node.lineno}: a ledger write on the read pool"
                    )
    assert calls >= 3  # grant, reset, tenant grant: the check saw them


def test_workers_and_infra_never_open_the_read_pool():
    for folder in ("workers", "infra"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "settings.py":
                continue
            assert "database_read_url" not in path.read_text(), f"{path} reads from the replica"
