"""The import rules of ARCHITECTURE.md, read from the source with ``ast``:

* the gate (``server/``) never names a table: no SQLAlchemy, no table class of
  ``registry.storage``; it reads through the registry feed and writes through sinks;
* the client package (``clients/python/permitgate_client``) installs alone: it imports nothing
  from ``registry``, ``server`` or the main ``permitgate`` package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import registry.storage as storage

ROOT = Path(__file__).resolve().parent.parent
TABLE_CLASSES = frozenset(
    name
    for name, value in vars(storage).items()
    if isinstance(value, type) and issubclass(value, storage.Base) and value is not storage.Base
)
TABLE_HELPERS = frozenset({"Base", "copy_rows", "table_of", "id_in", "values_of"})


def imports(source: str) -> list[tuple[str, str | None]]:
    """Every ``(module, name)`` a module imports; name is None for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def gate_violations(source: str) -> list[str]:
    """What a ``server/`` module imports that names the registry's tables or SQLAlchemy."""
    out: list[str] = []
    for module, name in imports(source):
        top = module.split(".")[0]
        if top == "sqlalchemy":
            out.append(f"imports {module}")
        elif module == "registry.storage" and name is None:
            out.append("imports registry.storage as a module (its tables come with it)")
        elif module == "registry.storage" and name in TABLE_CLASSES | TABLE_HELPERS:
            out.append(f"imports {name} from registry.storage")
        elif module == "registry" and name == "storage":
            out.append("imports registry.storage as a module (its tables come with it)")
    return out


def client_violations(source: str) -> list[str]:
    """What a client module imports from the server side of the repository."""
    return [
        f"imports {module}"
        for module, _ in imports(source)
        if module.split(".")[0] in {"registry", "server", "permitgate"}
    ]


def test_the_table_classes_are_known() -> None:
    assert {"HeadRow", "StatusRow", "EventRow", "DecisionRow", "NotificationRow"} <= (TABLE_CLASSES)


def test_the_rules_catch_what_they_forbid() -> None:
    assert gate_violations("from registry.storage import StatusRow, Database") == [
        "imports StatusRow from registry.storage"
    ]
    assert gate_violations("import sqlalchemy.exc") == ["imports sqlalchemy.exc"]
    assert gate_violations("from sqlalchemy import select") == ["imports sqlalchemy"]
    assert gate_violations("from registry import storage") != []
    assert gate_violations("from registry.feed import SqlFeed") == []
    assert client_violations("from registry.records import StatusRecord") == [
        "imports registry.records"
    ]
    assert client_violations("import permitgate.cli") == ["imports permitgate.cli"]
    assert client_violations("from permitgate_client._trust import VerifierKey") == []
    assert client_violations("from . import _trust") == []


def test_no_gate_module_names_a_table_or_sqlalchemy() -> None:
    modules = sorted((ROOT / "server").glob("*.py"))
    assert len(modules) > 5
    found = {
        path.name: bad for path in modules if (bad := gate_violations(path.read_text("utf-8")))
    }
    assert found == {}


def test_the_client_package_imports_nothing_of_the_server_side() -> None:
    package = ROOT / "clients" / "python" / "permitgate_client"
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 5
    found = {
        str(path.relative_to(package)): bad
        for path in modules
        if (bad := client_violations(path.read_text("utf-8")))
    }
    assert found == {}
