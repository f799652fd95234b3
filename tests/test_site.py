"""The documentation site builds with ``mkdocs build --strict``: no warning, no broken link, every page there."""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ov_causal
from ov_causal.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))


def build(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config_dir / "mkdocs.yml"),
         "-d", str(site_dir)],
        cwd=config_dir, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT, out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def text_of(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def is_module(dotted: str) -> bool:
    """``ov_causal.model.modeling`` is a module of the package; ``ov_causal.OVModelForCausalLM`` is not."""
    path = ROOT.joinpath(*dotted.split("."))
    return dotted != "ov_causal" and (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file())


def subcommands(parser: argparse.ArgumentParser, prefix: str = "ov-causal") -> list[tuple[str, Any]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{prefix} {name}", sub), *subcommands(sub, f"{prefix} {name}")]
    return found


def test_every_page_is_built_and_in_the_nav(site):
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), page
        assert f"{page}.md" in nav, f"{page}.md is not in the nav of mkdocs.yml"


def test_cli_page_lists_every_subcommand_and_flag_of_the_parser(site):
    text = text_of(site / "cli.html")
    commands = subcommands(build_parser())
    assert {"ov-causal generate", "ov-causal cache", "ov-causal bench"} <= {name for name, _ in commands}
    for name, sub in commands:
        assert name in text, f"{name} is missing from the CLI reference"
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, f"{name} {flag} is missing from the CLI reference"


def test_api_page_documents_the_public_names(site):
    """Each public name under its root path (``ov_causal.pipeline``), none under the module that defines it."""
    ids = set(re.findall(r'id="(ov_causal\.[^"]+)"', (site / "api.html").read_text(encoding="utf-8")))
    for name in ov_causal.__all__:
        assert f"ov_causal.{name}" in ids, f"ov_causal.{name} is not on the API page"
    internal = [i for i in ids if i.rsplit(".", 1)[-1] in ov_causal.__all__ and is_module(i.rsplit(".", 1)[0])]
    assert not internal, f"public names documented under an internal path: {internal}"
    for module in ("tools.evaluate", "tools.tune", "tools.bench"):
        assert any(i.startswith(f"ov_causal.{module}") for i in ids), module


def test_measured_tables_are_rendered_with_their_commands(site):
    for page, command in (("accuracy", "ov-causal eval ov_causal/demo_model"), ("benchmarking", "ov-causal bench")):
        content = (site / f"{page}.html").read_text(encoding="utf-8")
        assert "<table>" in content and command in text_of(site / f"{page}.html"), page


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", copy / "docs")
    (copy / "ov_causal").symlink_to(ROOT / "ov_causal", target_is_directory=True)
    with (copy / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [a page](no-such-page.md) and [a section](presets.md#no-such-section).\n")
    result = build(copy, tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "no-such-page.md" in log and "no-such-section" in log, log
