"""The documentation and the notebooks are code: their examples run on the shipped demo model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Reference pages may have no python example (the CLI page is generated, the API page is docstrings).
NO_EXAMPLES = {"cli.md", "api.md"}


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_doc_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    assert blocks or page.name in NO_EXAMPLES, f"{page} has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{page.name}[block {number}]", "exec"), namespace)  # noqa: S102
    finally:
        _stop_ray()


def _stop_ray() -> None:
    """A page that fails half-way must not leave its Ray cluster to the next test (its ray.init would fail)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


# The notebooks are executed in tests/test_notebooks.py.
