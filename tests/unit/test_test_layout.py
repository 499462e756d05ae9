"""Where test helpers live: in tests/support, never in a conftest or another test module.

A conftest holds fixtures (and pytest hooks); a test module holds tests and the helpers only it
uses. Anything two modules share is in tests/support and imported from there, so importing a
module never runs another folder's conftest or collects another module's tests a second time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def modules_under_tests() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """Every dotted name an import in ``path`` may load: ``from a.b import c`` gives ``a.b`` and ``a.b.c``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}"


def forbidden(name: str) -> bool:
    """A conftest (``tests.<anything>.conftest``) or a test module (``tests.<folder>.test_*``)."""
    parts = name.split(".")
    if parts[0] != "tests":
        return False
    return "conftest" in parts or any(part.startswith("test_") for part in parts[1:])


def test_no_module_under_tests_imports_a_conftest_or_a_test_module():
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in modules_under_tests()
        for line, name in imported_names(path)
        if forbidden(name)
    ]
    assert not found, "shared helpers belong in tests/support:\n" + "\n".join(found)


def is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def test_conftests_hold_only_fixtures_and_hooks():
    found = []
    for path in TESTS.rglob("conftest.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: class {node.name}")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not node.name.startswith("pytest_") and not any(map(is_fixture, node.decorator_list)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: def {node.name}")
    assert not found, "helpers belong in tests/support, not in a conftest:\n" + "\n".join(found)


def test_the_rule_reads_names_as_meant():
    refused = [
        "tests.e2e.conftest",
        "tests.conftest",
        "tests.e2e.test_chat",
        "tests.e2e.test_chat.uid",
        "tests.e2e.test_ai",  # from tests.e2e import test_ai
        "tests.unit.test_web_origins._Transport",
    ]
    allowed = ["tests.support.ids", "tests.support.ids.uid", "tests.e2e", "tests", "infra.test_helpers"]
    assert [name for name in refused if not forbidden(name)] == []
    assert [name for name in allowed if forbidden(name)] == []


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    folder = tmp_path / "tests" / "e2e"
    folder.mkdir(parents=True)
    module = folder / "test_x.py"
    module.write_text("from .conftest import grant\nfrom . import test_chat\nfrom ..support import ids\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    names = {name for _, name in imported_names(module)}
    assert {"tests.e2e.conftest.grant", "tests.e2e.test_chat", "tests.support.ids"} <= names
