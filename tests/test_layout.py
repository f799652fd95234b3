"""The package's layout: imports point one way (cli, serving, tools -> model -> convert -> config -> errors), no
import cycle (function-level and string imports included), no module reads another module's private names or writes
into another module's objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ov_causal"
# A backstop, not a shape: a file may be long if it holds one concept (limits are on functions: tests/test_style.py).
MAX_LINES = 600
# Layers, lowest first. The package root holds the public names: it imports only config and errors (the rest
# loads lazily; its ``if TYPE_CHECKING:`` imports are never run).
RANKS = {"errors": 0, "_optional": 0, "config": 1, "": 1, "convert": 2, "model": 3, "serving": 4, "tools": 4,
         "cli": 5, "__main__": 5}
LEAVES = {"ui"}  # display and progress: imported by any layer, import nothing of the package but errors
# The root's lazy names (its module-path strings, loaded by ``__getattr__``) reach the model and below; serving,
# tools and cli are imported by their own paths.
ROOT_LAZY_REACH = RANKS["model"]
STRING_IMPORTS = {"import_module", "__import__"}  # importlib.import_module(...), import_module(...), __import__(...)
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add", "remove",
            "discard"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _source(module: str) -> tuple[str, bool]:
    """The module's text, and whether it is a package's ``__init__``."""
    return MODULES[module].read_text(), MODULES[module].name == "__init__.py"


def _resolve(module: str, package: bool, level: int, name: str | None) -> str:
    """The absolute module a relative import (``level`` dots, then ``name``) names from ``module``."""
    if not level:
        return name or ""
    parts = module.split(".") if package else module.split(".")[:-1]
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([name] if name else []))


def _string_import(module: str, package: bool, node: ast.AST) -> str:
    """The module ``import_module("...")`` / ``__import__("...")`` names, or '' for any other node."""
    if not isinstance(node, ast.Call) or not node.args:
        return ""
    func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
    spec = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
    if func not in STRING_IMPORTS or not isinstance(spec, str):
        return ""
    dots = len(spec) - len(spec.lstrip("."))
    return _resolve(module, package, dots, spec[dots:] or None)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: read by IDEs and the docs, never run."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    return {id(n) for block in blocks for stmt in block.body for n in ast.walk(stmt)}


def _ours(name: str) -> bool:
    return name.split(".")[0] == "ov_causal"


def _imports_in(module: str, source: str, package: bool) -> list[tuple[str, str, int, bool]]:
    """(imported module, name taken from it or '', line, by string) for every import of the package run, at any
    depth: statements, ``import_module``/``__import__`` calls, and module paths held in dicts (``_LAZY``)."""
    found = []
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, package, node.level, node.module)
            if not _ours(target):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, "", node.lineno, False) if sub in MODULES else
                             (target, alias.name, node.lineno, False))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno, False) for a in node.names if _ours(a.name)]
        elif _ours(target := _string_import(module, package, node)):
            found.append((target, "", node.lineno, True))
        elif isinstance(node, ast.Dict):
            found += [(v.value, "", v.lineno, True) for v in node.values
                      if isinstance(v, ast.Constant) and v.value in MODULES]
    return found


def _imports(module: str) -> list[tuple[str, str, int, bool]]:
    return _imports_in(module, *_source(module))


def _layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return ""
    return parts[0]


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _, _ in _imports(m) if t != m and t in MODULES} for m in MODULES}


def _allowed(module: str, target: str, by_string: bool) -> bool:
    here, there = _layer(module), _layer(target)
    if there == here or target not in MODULES and target.rsplit(".", 1)[0] == module:
        return True
    if here in LEAVES:
        return RANKS.get(there) == 0
    if there in LEAVES:
        return True
    if module == "ov_causal" and by_string:
        return RANKS[there] <= ROOT_LAZY_REACH
    same = RANKS[here] == RANKS[there] and {here, there} != {"serving", "tools"}
    return RANKS[here] > RANKS[there] or same


def _layer_breaches(module: str, source: str, package: bool) -> list[str]:
    return [f"{module}:{line} ({_layer(module) or 'root'}) imports {target} ({_layer(target) or 'root'})"
            + (" by string" if by_string else "")
            for target, _, line, by_string in _imports_in(module, source, package)
            if not _allowed(module, target, by_string)]


def _bindings(module: str, tree: ast.AST, package: bool) -> dict[str, str]:
    """Names bound to a package module (``ov_causal.x``) or to an object imported from one (``ov_causal.x:Name``):
    by ``import``, ``from ... import`` and ``name = import_module("...")``, at any depth."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                          for a in node.names if _ours(a.name)})
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, package, node.level, node.module)
            if _ours(target):
                bound.update({a.asname or a.name: f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES
                              else f"{target}:{a.name}" for a in node.names})
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and _ours(target := _string_import(module, package, node.value))):
            bound[node.targets[0].id] = target
    return bound


def _owner(module: str, package: bool, node: ast.AST, bound: dict[str, str]) -> str:
    """What ``node`` names if it is another package module or an object taken from one, else ''."""
    if isinstance(node, ast.Name):
        return bound.get(node.id, "")
    if isinstance(node, ast.Attribute):
        owner = _owner(module, package, node.value, bound)
        if not owner:
            return ""
        if f"{owner}.{node.attr}" in MODULES:
            return f"{owner}.{node.attr}"
        return f"{owner}:{node.attr}" if owner in MODULES else f"{owner}.{node.attr}"
    target = _string_import(module, package, node)
    return target if _ours(target) else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_reads(module: str, source: str, package: bool) -> list[str]:
    """Private names of other package modules: imported, read as ``module._x`` / ``Imported._x`` (through any
    chain of attributes), or through ``getattr``/``hasattr``. ``self._x`` and ``cls._x`` are the module's own."""
    tree = ast.parse(source)
    bound, wrong = _bindings(module, tree, package), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, package, node.level, node.module)
            wrong += [f"{module}:{node.lineno} imports {a.name} from {target}" for a in node.names
                      if _ours(target) and _private(a.name) and f"{target}.{a.name}" not in MODULES]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _owner(module, package, node.value, bound)
            if owner and f"{owner}.{node.attr}" not in MODULES:
                wrong.append(f"{module}:{node.lineno} reads {owner}.{node.attr}")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"getattr", "hasattr"}
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)
              and (owner := _owner(module, package, node.args[0], bound))):
            wrong.append(f"{module}:{node.lineno} reads {owner}.{node.args[1].value}")
    return wrong


def _written(node: ast.AST) -> list[tuple[ast.AST, str]]:
    """(the object a target writes into, what it writes: an attribute name or '[...]') for an assignment target."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return [w for elt in node.elts for w in _written(elt)]
    if isinstance(node, ast.Starred):
        return _written(node.value)
    if isinstance(node, ast.Attribute):
        return [(node.value, node.attr)]
    if isinstance(node, ast.Subscript):
        return [(node.value, "[...]")]
    return []


def _foreign_writes(module: str, source: str, package: bool) -> list[str]:
    """Writes into another package module or an object imported from one: ``other.x = ...``, ``other.x[k] = ...``,
    ``Imported[k] = ...``, ``+=``, ``del``, ``setattr``/``delattr``, and mutating calls (``Imported.update(...)``)."""
    tree = ast.parse(source)
    bound, wrong = _bindings(module, tree, package), []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"setattr", "delattr"} and node.args:
            if owner := _owner(module, package, node.args[0], bound):
                wrong.append(f"{module}:{node.lineno} {node.func.id}({owner}, ...)")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
              and ":" in (owner := _owner(module, package, node.func.value, bound))):
            wrong.append(f"{module}:{node.lineno} mutates {owner} with .{node.func.attr}()")
        for obj, what in (w for target in targets for w in _written(target)):
            if owner := _owner(module, package, obj, bound):
                wrong.append(f"{module}:{node.lineno} writes {owner}{'' if what == '[...]' else '.'}{what}")
    return wrong


def test_modules_are_found():
    assert {"ov_causal.model.modeling", "ov_causal.serving.scheduler", "ov_causal.convert.cache"} <= set(MODULES)


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
    wrong = [w for module in MODULES for w in _layer_breaches(module, *_source(module))]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_private_names_across_modules():
    wrong = [w for module in MODULES for w in _private_reads(module, *_source(module))]
    assert not wrong, "private names read across modules:\n" + "\n".join(wrong)


def test_no_writes_into_other_modules():
    wrong = [w for module in MODULES for w in _foreign_writes(module, *_source(module))]
    assert not wrong, "writes into other modules' objects:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(PACKAGE.parent)} has {lines} lines (at most {MAX_LINES})"


# Planted sources: (module the source stands for, is it a package __init__, source, what the check must report,
# or '' when it must report nothing). Each check is shown to fail on a violation and to pass clean code.
MODELING, PRESETS, ROOT = "ov_causal.model.modeling", "ov_causal.config.presets", "ov_causal"
LAYER_CASES = [
    (PRESETS, False, "from importlib import import_module\ndef f():\n"
     "    return import_module('ov_causal.model.modeling')\n",
     "imports ov_causal.model.modeling (model) by string"),
    (PRESETS, False, "import importlib\nm = importlib.import_module('ov_causal.convert.cache')\n",
     "imports ov_causal.convert.cache (convert) by string"),
    (MODELING, False, "def f():\n    __import__('ov_causal.serving.scheduler')\n",
     "imports ov_causal.serving.scheduler"),
    (MODELING, False, "from importlib import import_module\nimport_module('..serving.scheduler', __package__)\n",
     "imports ov_causal.serving.scheduler"),
    (PRESETS, False, "_LAZY = {'load': 'ov_causal.model.modeling'}\n", "imports ov_causal.model.modeling"),
    (ROOT, True, "_LAZY = {'serve': 'ov_causal.serving.ray_serve'}\n", "imports ov_causal.serving.ray_serve"),
    (ROOT, True, "from .model.modeling import load_model\n", "imports ov_causal.model.modeling (model)"),
    (ROOT, True, "_LAZY = {'generate': 'ov_causal.model.run', 'set_progress': 'ov_causal.ui.progress'}\n", ""),
    (MODELING, False, "from importlib import import_module\nimport_module('ov_causal.config.presets')\n"
     "import_module('json')\nNAMES = {'manifest': 'ov_causal.json'}\n", ""),
]
PRIVATE_CASES = [
    (MODELING, False, "from ..convert import cache\ncache._entries\n", "reads ov_causal.convert.cache._entries"),
    (MODELING, False, "from ..convert.cache import Cache\nCache._lock\n", "reads ov_causal.convert.cache:Cache._lock"),
    (MODELING, False, "import ov_causal.convert.cache\nov_causal.convert.cache._entries\n",
     "reads ov_causal.convert.cache._entries"),
    (MODELING, False, "from importlib import import_module\nm = import_module('ov_causal.convert.cache')\nm._x\n",
     "reads ov_causal.convert.cache._x"),
    (MODELING, False, "from importlib import import_module\nimport_module('ov_causal.convert.cache')._x\n",
     "reads ov_causal.convert.cache._x"),
    (MODELING, False, "from ..convert import cache\ngetattr(cache, '_entries')\n",
     "reads ov_causal.convert.cache._entries"),
    (MODELING, False, "from ..convert.cache import _hidden\n", "imports _hidden from ov_causal.convert.cache"),
    (MODELING, False, "from ..convert import cache\nclass A:\n    def f(self, cls):\n        self._x, cls._y\n"
     "        return cache.public, cache.__name__\n", ""),
    (ROOT, True, "import ov_causal._optional\nov_causal._optional.need\nfrom ._optional import need\n", ""),
]
WRITE_CASES = [
    (MODELING, False, "from ..convert import cache\ncache.LIMIT = 3\n", "writes ov_causal.convert.cache.LIMIT"),
    (MODELING, False, "from ..convert import cache\ndef f():\n    cache.count += 1\n",
     "writes ov_causal.convert.cache.count"),
    (MODELING, False, "from ..convert import cache\ndel cache.LIMIT\n", "writes ov_causal.convert.cache.LIMIT"),
    (MODELING, False, "from ..convert import cache\nsetattr(cache, 'LIMIT', 3)\n", "setattr(ov_causal.convert.cache"),
    (MODELING, False, "from ..config.presets import PRESETS\nPRESETS['x'] = 1\n",
     "writes ov_causal.config.presets:PRESETS[...]"),
    (MODELING, False, "from ..config import presets\npresets.PRESETS['x'] = 1\n",
     "writes ov_causal.config.presets:PRESETS[...]"),
    (MODELING, False, "from ..config.presets import PRESETS\nPRESETS.update(x=1)\n",
     "mutates ov_causal.config.presets:PRESETS with .update()"),
    (MODELING, False, "from ..config.presets import Preset\nPreset.name, a = 'x', 1\n",
     "writes ov_causal.config.presets:Preset.name"),
    (MODELING, False, "from ..convert import cache\nclass A:\n    def f(self):\n        self.x = cache.LIMIT\n"
     "        obj = cache.Cache()\n        obj.x = 1\n        d = {}\n        d['a'] = 1\n", ""),
]


@pytest.mark.parametrize(("check", "module", "package", "source", "expected"),
                         [(_layer_breaches, *case) for case in LAYER_CASES]
                         + [(_private_reads, *case) for case in PRIVATE_CASES]
                         + [(_foreign_writes, *case) for case in WRITE_CASES])
def test_the_checks_catch_what_they_look_for(check, module, package, source, expected):
    found = check(module, source, package)
    if expected:
        assert any(expected in line for line in found), f"{check.__name__} missed {expected!r}: {found}"
    else:
        assert not found, f"{check.__name__} reported clean code: {found}"


def test_the_graph_sees_function_level_and_string_imports(tmp_path, monkeypatch):
    """A cycle planted through a function-level import, or through a string import, is reported."""
    real = MODULES[PRESETS]
    for planted in ("def f():\n    from ..model.modeling import load_model\n",
                    "def f():\n    import importlib\n    importlib.import_module('ov_causal.model.modeling')\n"):
        fake = tmp_path / "presets.py"
        fake.write_text(real.read_text() + "\n" + planted)
        monkeypatch.setitem(MODULES, PRESETS, fake)
        with pytest.raises(AssertionError, match="config.presets"):
            test_imports_point_one_way()
        with pytest.raises(AssertionError, match="import cycles"):
            test_no_import_cycle()


def test_top_level_holds_no_old_paths():
    """Code lives in the layers; the top level keeps the public root, ``python -m``, errors and extras only."""
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py", "_optional.py", "errors.py"}
