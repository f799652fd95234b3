"""The package's layout: imports point one way (cli, serving, tools -> model -> build -> config -> errors), no
import cycle (function-level imports included), no module reads another module's private names, modules stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ov_causal"
MAX_LINES = 400  # the guide's "modules under ~400 lines"; functions are what should stay short
# Layers, lowest first. The package root holds the public names: it imports only config and errors (the rest
# loads lazily; its ``if TYPE_CHECKING:`` imports are never run).
RANKS = {"errors": 0, "_optional": 0, "config": 1, "": 1, "build": 2, "model": 3, "serving": 4, "tools": 4,
         "cli": 5, "__main__": 5}
LEAVES = {"ui"}  # display and progress: imported by any layer, import nothing of the package but errors


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _target(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: read by IDEs and the docs, never run."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    return {id(n) for block in blocks for stmt in block.body for n in ast.walk(stmt)}


def _imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, name taken from it or '', line) for every import of the package run, at any depth."""
    path = MODULES[module]
    found = []
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _target(module, path, node)
            if target.split(".")[0] != "ov_causal":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, "", node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "ov_causal"]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return ""
    return parts[0]


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t != m and t in MODULES} for m in MODULES}


def test_modules_are_found():
    assert {"ov_causal.model.modeling", "ov_causal.serving.core", "ov_causal.build.cache"} <= set(MODULES)


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_one_way():
    wrong = []
    for module in MODULES:
        here = _layer(module)
        for target, _, line in _imports(module):
            there = _layer(target)
            if there == here or target not in MODULES and target.rsplit(".", 1)[0] == module:
                continue
            if here in LEAVES:
                ok = RANKS.get(there) == 0
            elif there in LEAVES:
                ok = True
            else:
                same = RANKS[here] == RANKS[there] and {here, there} != {"serving", "tools"}
                ok = RANKS[here] > RANKS[there] or same
            if not ok:
                wrong.append(f"{module}:{line} ({here or 'root'}) imports {target} ({there or 'root'})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_private_names_across_modules():
    wrong = []
    for module, path in MODULES.items():
        aliases = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) or isinstance(node, ast.Import):
                for target, name, line in _imports_of(module, path, node):
                    if name.startswith("_") and not name.startswith("__"):
                        wrong.append(f"{module}:{line} imports {name} from {target}")
                    if not name:
                        aliases[_bound_name(node, target)] = target
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{module}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "private names read across modules:\n" + "\n".join(wrong)


def _imports_of(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[tuple[str, str, int]]:
    if isinstance(node, ast.Import):
        return [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "ov_causal"]
    target = _target(module, path, node)
    if target.split(".")[0] != "ov_causal":
        return []
    return [(f"{target}.{a.name}", "", node.lineno) if f"{target}.{a.name}" in MODULES
            else (target, a.name, node.lineno) for a in node.names]


def _bound_name(node: ast.ImportFrom | ast.Import, target: str) -> str:
    for alias in node.names:
        if isinstance(node, ast.Import) and alias.name == target:
            return alias.asname or alias.name.split(".")[0]
        if isinstance(node, ast.ImportFrom) and target.endswith("." + alias.name):
            return alias.asname or alias.name
    return ""


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(PACKAGE.parent)} has {lines} lines (at most {MAX_LINES})"


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """The graph walk sees function-level imports and private names: a cycle planted through one is reported."""
    planted = {"ov_causal.config.presets": "def f():\n    from ..model.modeling import _hidden\n"}
    real = MODULES["ov_causal.config.presets"]
    fake = tmp_path / "presets.py"
    fake.write_text(real.read_text() + "\n" + planted["ov_causal.config.presets"])
    monkeypatch.setitem(MODULES, "ov_causal.config.presets", fake)
    with pytest.raises(AssertionError, match="config.presets"):
        test_imports_point_one_way()
    with pytest.raises(AssertionError, match="_hidden"):
        test_no_private_names_across_modules()
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()


def test_top_level_holds_no_old_paths():
    """Code lives in the layers; the top level keeps the public root, ``python -m``, errors and extras only."""
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py", "_optional.py", "errors.py"}
