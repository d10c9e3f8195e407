"""The import rules: the hub's core knows neither the credential store nor any connector.

``auth/`` and ``connectors/`` build on ``hub/``; only the composition roots (the command
line and the demo) put them together. Connectors never import each other. Every import
counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOTS = ("hub/cli/", "hub/demo.py")


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name ``path`` imports, relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_hub_core_imports_neither_auth_nor_connectors() -> None:
    found = []
    for path in sources("hub"):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith(COMPOSITION_ROOTS):
            continue
        for name in sorted(imports(path)):
            if name.split(".")[0] in ("auth", "connectors"):
                found.append(f"{where} imports {name}")
    assert not found, "\n".join(found)


def test_connectors_do_not_import_each_other() -> None:
    found = []
    for path in sources("connectors"):
        parts = path.relative_to(ROOT).parts
        if len(parts) < 3:
            continue
        own = parts[1]
        for name in sorted(imports(path)):
            top = name.split(".")
            if top[0] == "connectors" and len(top) > 1 and top[1] != own:
                found.append(f"{path.relative_to(ROOT).as_posix()} imports {name}")
    assert not found, "\n".join(found)


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "hub" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("def f():\n    from auth.flows import open_vault\n    from . import config\n")
    assert imports(probe, tmp_path) == {"auth.flows", "hub"}


PLUGIN_FORBIDDEN = ("hub.store", "hub.engine")
"""What a connector never imports: it asks the hub through ``hub.services`` instead."""


def forbidden_for_plugins(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in PLUGIN_FORBIDDEN)


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """``imports`` plus each name taken from a module (``from hub import store`` gives
    ``hub.store``): a submodule imported that way counts too."""
    names = imports(path, root)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_connectors_reach_the_store_and_engine_only_through_services() -> None:
    found = []
    for path in sources("connectors"):
        for name in sorted(imported_names(path)):
            if forbidden_for_plugins(name):
                found.append(f"{path.relative_to(ROOT).as_posix()} imports {name}")
    assert not found, "\n".join(found)


def test_the_plugin_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    probe = tmp_path / "connectors" / "acme" / "webhook.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import hub.store.schema\n"
        "if TYPE_CHECKING:\n"
        "    from hub.store import Store\n"
        "def handle():\n"
        "    from hub.engine import sync_connection\n"
        "from hub import services, engine\n"
        "from hub.storehouse import x\n"
    )
    flagged = {n for n in imported_names(probe, tmp_path) if forbidden_for_plugins(n)}
    assert {"hub.engine", "hub.store", "hub.store.schema"} <= flagged
    assert not {n for n in flagged if n.startswith(("hub.services", "hub.storehouse"))}
