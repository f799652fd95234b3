"""preset="auto" lives in the config layer: its policy is testable without a model, and loading with it
never imports the tools."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from ov_causal.config.auto import TUNED_FILE, auto_preset, recall_all, tuned_key, tuned_record, with_record
from ov_causal.model.run import DEMO_MODEL

ROOT = Path(__file__).resolve().parents[1]


def _never(*args: object) -> dict[str, float]:
    raise AssertionError("the CPU probe must not run for a tuned or small model")


def test_rule_by_size_and_probe(tmp_path):
    assert auto_preset("hub:org/m", 135_000_000, tmp_path, _never) == ("int8", "rule: up to 1B parameters -> int8")
    assert auto_preset("hub:org/m", None, tmp_path, _never)[0] == "int8"
    preset, reason = auto_preset("hub:org/m", 3_000_000_000, tmp_path, lambda: {"int8": 1.0, "int4": 0.5})
    assert preset == "int4_asym_g128" and "2.00x faster" in reason
    preset, reason = auto_preset("hub:org/m", 3_000_000_000, tmp_path, lambda: {"int8": 1.0, "int4": 0.95})
    assert preset == "int8" and "not faster" in reason


def test_tuned_choice_wins_over_the_rule(tmp_path):
    key = tuned_key("org/model", fingerprint=lambda folder: "unused")
    assert key == "hub:org/model" and tuned_key(tmp_path, lambda folder: "abc") == "local:abc"
    record = tuned_record("int4_sym_g64", "size", 0.05, 0.01, 80.0, 1024)
    (tmp_path / TUNED_FILE).write_text(json.dumps(with_record(tmp_path, key, record)))
    assert recall_all(tmp_path) == {key: record}
    preset, reason = auto_preset(key, 3_000_000_000, tmp_path, _never)
    assert preset == "int4_sym_g64" and reason.startswith("tuned on") and "size, budget +5.0%" in reason
    (tmp_path / TUNED_FILE).write_text("{not json")
    assert recall_all(tmp_path) == {} and auto_preset(key, 10, tmp_path, _never)[0] == "int8"


def test_auto_policy_imports_only_config_and_errors():
    code = "import sys, ov_causal.config.auto; print(sorted(m for m in sys.modules if m.startswith('ov_causal')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = eval(done.stdout)  # noqa: S307 - our own subprocess's printed list
    assert all(m in ("ov_causal", "ov_causal.errors") or m.startswith("ov_causal.config") for m in loaded), loaded


def test_loading_with_auto_does_not_import_the_tools(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from ov_causal import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(DEMO_MODEL)!r}, preset="auto", compile=False,
                                                     ov_cache_dir={str(tmp_path)!r})
        assert model.ov_manifest.preset == "int8", model.ov_manifest.preset
        print(sorted(m for m in sys.modules if m.startswith("ov_causal.tools")))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
