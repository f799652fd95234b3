"""The package metadata agrees with the code: the Python version ``requires-python`` admits runs every module."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Standard-library names newer than some Python 3 release -> the release that added them.
NEWER_STDLIB = {
    "hashlib.file_digest": (3, 11),
    "tomllib": (3, 11),
    "asyncio.TaskGroup": (3, 11),
    "asyncio.timeout(": (3, 11),
    "datetime.UTC": (3, 11),
    "enum.StrEnum": (3, 11),
    "typing.Self": (3, 11),
    "ExceptionGroup": (3, 11),
    "except*": (3, 11),
    "itertools.batched": (3, 12),
    "typing.override": (3, 12),
}


def minimum_python() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    found = re.fullmatch(r">=\s*3\.(\d+)", spec.strip())
    assert found, f"requires-python {spec!r}: expected the form '>=3.N'"
    return 3, int(found.group(1))


def needed_python(source: str) -> dict[str, tuple[int, int]]:
    """Each newer stdlib name ``source`` uses -> the Python it needs."""
    return {name: version for name, version in NEWER_STDLIB.items() if name in source}


def package_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "ov_causal").rglob("*.py"))


def test_requires_python_admits_no_interpreter_the_code_fails_on():
    minimum = minimum_python()
    too_new = {name: version for name, version in needed_python(package_source()).items() if version > minimum}
    assert not too_new, f"requires-python allows {minimum}, but the package uses {too_new}"


def test_the_check_sees_what_it_looks_for():
    planted = 'with open(path, "rb") as f:\n    digest = hashlib.file_digest(f, "sha256")\n'
    assert needed_python(planted) == {"hashlib.file_digest": (3, 11)}


def test_running_interpreter_is_one_requires_python_admits():
    assert sys.version_info[:2] >= minimum_python()


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    """Distribution names (normalized, extras and versions left out): ``"ray[data]==2.6"`` -> ``"ray"``."""
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("-", "_") for r in requirements}


def test_the_serve_extra_holds_what_the_single_process_server_imports_and_no_ray():
    from ov_causal.serving.direct import SERVE_MODULES

    serve = _names(_extras()["serve"])
    assert set(SERVE_MODULES) <= serve, f"serving/direct.py needs {sorted(set(SERVE_MODULES) - serve)}"
    assert "ray" not in serve
    imported = set(re.findall(r"^\s*(?:from|import) (\w+)", "\n".join(
        (ROOT / "ov_causal" / "serving" / f"{name}.py").read_text() for name in ("direct", "http", "openai_api")),
        re.M))
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= set(SERVE_MODULES), f"imported by the --no-ray server but not in SERVE_MODULES: " \
                                              f"{sorted(third_party - set(SERVE_MODULES))}"


def test_the_ray_extra_is_the_serve_extra_plus_ray_and_the_tests_get_both():
    extras = _extras()
    assert "ov_causal[serve]" in extras["ray"] and "ray" in _names(extras["ray"])
    test = next(r for r in extras["test"] if r.startswith("ov_causal["))
    assert "ray" in re.findall(r"\w+", test.split("[", 1)[1])  # ray, and with it serve
