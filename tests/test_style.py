"""The style the project holds itself to, checked by the suite: ruff with pyproject.toml's rules on every file, and
limits on functions (complexity, branches, arguments, statements) in the package, with the few public signatures
that must stay long excepted by name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_LIMITS = ("C901", "PLR0912", "PLR0913", "PLR0915")  # thresholds: pyproject.toml's [tool.ruff.lint.*]
# Public functions whose keywords users pass by name and IDEs, help() and Jupyter's Shift-Tab show: their argument
# count is the API. Exact: an entry that no longer breaks a limit fails the test too.
LONG_SIGNATURES = {
    "ov_causal/model/modeling.py:load_model": "PLR0913",  # from_pretrained's keywords
    "ov_causal/serving/ray_serve.py:serve": "PLR0913",  # serve() and `ov-causal serve`'s flags
    "ov_causal/serving/ray_batch.py:generate_batch": "PLR0913",  # Ray Data batch generation (README)
    "ov_causal/serving/ovms.py:export_ovms": "PLR0913",  # docs/scaling.md, `ov-causal export --ovms`
    "ov_causal/tools/bench.py:bench": "PLR0913",  # docs/benchmarking.md
    "ov_causal/tools/evaluate.py:evaluate": "PLR0913",  # docs/accuracy.md
    "ov_causal/tools/tune.py:tune": "PLR0913",  # docs/accuracy.md: the budget, objective, workload, candidates, texts
    "ov_causal/tools/versus.py:bench_against": "PLR0913",  # docs/benchmarking.md, `ov-causal bench --against`
    "ov_causal/config/sampling.py:SamplingParams.from_openai": "PLR0913",  # an OpenAI request's fields, by name
    "ov_causal/serving/scheduler.py:ServingCore.__init__": "PLR0913",  # the serving core's settings, by name (replicas,
    # Ray Data, scripts/serve_bench.py construct it)
}


def test_ruff_finds_nothing():
    """Every rule but the function limits, on every file (the limits have their own tests below)."""
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--extend-ignore",
                             ",".join(FUNCTION_LIMITS), str(ROOT)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _functions(path: Path) -> dict[int, str]:
    """The line of each ``def`` in ``path`` -> its qualified name (``Class.method``)."""
    found = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[child.lineno] = prefix + child.name
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text()), "")
    return found


def _limit_breaches() -> dict[str, set[str]]:
    """``file:function`` -> the function-limit rules it breaks, as ruff reports them (pyproject's thresholds)."""
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json",
                             "--select", ",".join(FUNCTION_LIMITS), str(ROOT)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    breaches: dict[str, set[str]] = {}
    for item in json.loads(result.stdout):
        path = Path(item["filename"])
        name = _functions(path).get(item["location"]["row"], f"line {item['location']['row']}")
        breaches.setdefault(f"{path.relative_to(ROOT).as_posix()}:{name}", set()).add(item["code"])
    return breaches


def _listed(entries: dict[str, str]) -> dict[str, set[str]]:
    return {key: set(codes.split(",")) for key, codes in entries.items()}


def test_functions_stay_within_the_limits():
    """No function breaks a limit unless it is a long public signature listed above."""
    breaches, allowed = _limit_breaches(), _listed(LONG_SIGNATURES)
    wrong = [f"{key}: {', '.join(sorted(codes - allowed.get(key, set())))}"
             for key, codes in sorted(breaches.items()) if codes - allowed.get(key, set())]
    assert not wrong, "functions over the limits (split them, or list a public signature in LONG_SIGNATURES):\n" + \
        "\n".join(wrong)


def test_long_signatures_list_is_exact():
    """An entry whose function no longer breaks its rule (renamed, split, shortened) is removed from the list."""
    breaches = _limit_breaches()
    stale = [f"{key}: {codes}" for key, codes in sorted(_listed(LONG_SIGNATURES).items())
             if not codes <= breaches.get(key, set())]
    assert not stale, "LONG_SIGNATURES entries that no longer break their rule:\n" + "\n".join(stale)


def test_the_limits_catch_a_long_function(tmp_path):
    """The limits are on (pyproject's thresholds): a planted 9-argument, 13-branch, 53-statement function is
    reported by all four rules."""
    pytest.importorskip("ruff")
    planted = tmp_path / "ov_causal" / "planted.py"
    planted.parent.mkdir()
    branches = "".join(f"    if a == {i}:\n        b += {i}\n" for i in range(13))
    statements = "".join(f"    c = c + {i}\n" for i in range(26))
    planted.write_text(f"def f(a, b, c, d, e, f, g, h, i):\n{branches}{statements}    return b\n")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json",
                             "--config", str(ROOT / "pyproject.toml"), "--select", ",".join(FUNCTION_LIMITS),
                             str(planted)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert {item["code"] for item in json.loads(result.stdout)} == set(FUNCTION_LIMITS)
