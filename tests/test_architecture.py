"""The shape of the package (docs/ARCHITECTURE.md): no import circle, and the layers point one way only.

Every `import` statement of every module is read, at module level and inside functions alike (a function-level
import is a dependency too, only a later one)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "octrack"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str) -> set[str]:
    """The octrack modules that `module`'s import statements name (a name imported from a package is the
    submodule where there is one)."""
    tree = ast.parse(MODULES[module].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                         for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imported(module) for module in MODULES}


def cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in GRAPH[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return found


def importers_of(prefix: str) -> set[str]:
    return {module for module, names in GRAPH.items()
            if any(name == prefix or name.startswith(prefix + ".") for name in names)}


def test_every_module_is_read():
    assert {"octrack.training", "octrack.networks", "octrack.networks.detect", "octrack.stages.predict",
            "octrack.cli"} <= set(MODULES)
    assert "octrack.networks.base" in GRAPH["octrack.networks.detect"]


def test_no_import_circle():
    assert cycles() == []


def test_the_engine_knows_no_network_and_no_stage():
    assert not {name for name in GRAPH["octrack.training"] if name.startswith(("octrack.networks", "octrack.stages"))}


def test_only_the_cli_and_stages_import_stages():
    assert importers_of("octrack.stages") <= {"octrack.cli"} | {m for m in MODULES if m.startswith("octrack.stages")}


def test_only_stages_read_the_registry():
    readers = importers_of("octrack.networks") - {m for m in MODULES if m.startswith("octrack.networks")}
    assert readers <= {m for m in MODULES if m.startswith("octrack.stages")}


def test_the_cli_only_calls_stages():
    allowed = ("octrack.stages", "octrack.errors", "octrack.config", "octrack.tracking", "octrack.synth")
    assert all(name == "octrack" or name.startswith(allowed) for name in GRAPH["octrack.cli"])


def test_settings_json_is_read_and_written_only_by_the_model_folder():
    """No module but model_folder.py names settings.json or reads settings by string key."""
    for module, path in MODULES.items():
        text = path.read_text()
        if module != "octrack.model_folder":
            assert "settings.json\"" not in text and "SETTINGS_FILE" not in text, module
        assert not re.search(r"settings(\.get\(|\[\")", text), module
