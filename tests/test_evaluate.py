"""eval and tune on the trained demo model with held-out text it never saw."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from ov_causal import AutoModelForCausalLM, Compression, OptionError, PresetError
from ov_causal.convert.speed_probe import int_speeds
from ov_causal.model.run import DEMO_MODEL
from ov_causal.tools.evaluate import evaluate, row_names, thorough_flags
from ov_causal.tools.tune import ALL_CANDIDATES, CANDIDATES, tune

HELDOUT = DEMO_MODEL / "heldout.txt"
CALIBRATION = DEMO_MODEL / "calibration.txt"  # training-side files: kept apart from the held-out text
FAST = dict(max_tokens=1024, window=128, new_tokens=16, num_prompts=2, speed_runs=1)


@pytest.fixture(scope="module")
def report():
    return evaluate(
        DEMO_MODEL, ["int8", "int4_sym_g128", "int4_asym_g128", "int4_asym_g128_gptq"], HELDOUT,
        calibration=CALIBRATION, **FAST,
    )


def test_reference_scores_nothing_against_itself(report):
    ref = report.row("fp32")
    assert ref.ppl_change == 0.0 and ref.top1_agreement == 1.0 and ref.mean_kl == pytest.approx(0.0, abs=1e-9)
    assert ref.first_divergence == 16 and ref.divergent_fraction == 0.0
    assert 1 < ref.perplexity < 200  # a trained model: chance would be 4096
    assert report.text_tokens == 1024 and report.windows == 15


def test_table_shows_peak_memory_and_the_thorough_run(report):
    table = report.table()
    assert "for the thorough run: --max-tokens 4096 --num-prompts 4 --speed-runs 3" in table
    peak = next(line for line in table.splitlines() if line.startswith("peak memory (RSS) of this process:"))
    assert float(peak.split(": ")[1].split()[0]) == pytest.approx(report.peak_rss_mib, abs=1)
    assert report.peak_rss_mib > 100
    assert thorough_flags(4096, 4, 3) == () and thorough_flags(8192, 2, 5) == ("--num-prompts 4",)


def test_int8_costs_less_than_int4(report):
    int8, int4 = report.row("int8"), report.row("int4_sym_g128")
    assert abs(int8.ppl_change) < abs(int4.ppl_change)
    assert int8.mean_kl < int4.mean_kl and int8.top1_agreement > int4.top1_agreement
    assert int8.ir_mib < report.row("fp32").ir_mib / 3 and int4.ir_mib < int8.ir_mib
    assert all(r.tokens_per_second > 0 for r in report.rows)


def test_data_aware_int4_is_at_least_as_good_as_plain_int4(report):
    plain, gptq = report.row("int4_asym_g128"), report.row("int4_asym_g128_gptq")
    assert gptq.mean_kl <= plain.mean_kl
    assert gptq.top1_agreement >= plain.top1_agreement
    assert gptq.ppl_change <= plain.ppl_change


def test_table_json_and_plot(report, tmp_path):
    table = report.table()
    assert "int4_asym_g128_gptq" in table and "Δppl" in table
    data = json.loads(report.to_json(tmp_path / "eval.json"))
    assert [r["preset"] for r in data["rows"]] == ["fp32", "int8", "int4_sym_g128", "int4_asym_g128",
                                                   "int4_asym_g128_gptq"]
    report.plot(tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_tune_under_tight_loose_and_impossible_budgets(tmp_path):
    candidates = ("int8", "int4_sym_g128", "int4_asym_g64")
    assert CANDIDATES == (*candidates, "int4_sym_channel")  # the default candidates: the quick run's
    tight = tune(DEMO_MODEL, 0.001, "speed", None, HELDOUT, ov_cache_dir=tmp_path, **FAST)
    assert tight.choice == "int8"
    assert f"--presets {','.join(ALL_CANDIDATES)}" in tight.table() and "--speed-runs 3" in tight.table()
    loose = tune(DEMO_MODEL, 0.10, "size", candidates, HELDOUT, ov_cache_dir=tmp_path, save=tmp_path / "chosen",
                 **FAST)
    assert loose.choice == "int4_sym_g128"  # the smallest IR
    assert "<- chosen" in loose.table() and "--presets" not in loose.table()
    saved = json.loads((tmp_path / "chosen" / "ov_causal.json").read_text())
    assert saved["preset"] == "int4_sym_g128" and saved["tuned"]["objective"] == "size"
    none = tune(DEMO_MODEL, 0.0, "speed", ("int4_sym_g128", "int4_asym_g64"), HELDOUT, ov_cache_dir=tmp_path, **FAST)
    assert none.choice is None and none.best_available in ("int4_sym_g128", "int4_asym_g64")
    assert "Nothing was chosen" in none.table()
    auto = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="auto", ov_cache_dir=tmp_path, compile=False)
    assert auto.ov_manifest.preset == "int4_sym_g128" and auto.ov_auto_reason.startswith("tuned on")


def test_auto_rule_without_a_tuned_choice(tmp_path, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="auto", ov_cache_dir=tmp_path, compile=False)
    assert model.ov_manifest.preset == "int8" and "up to 1B" in model.ov_auto_reason
    monkeypatch.setattr("ov_causal.convert.sources.count_parameters", lambda folder: 3_000_000_000)
    monkeypatch.setattr("ov_causal.convert.speed_probe.int_speeds", lambda: {"int8": 1.0, "int4": 0.5})
    big = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="auto", ov_cache_dir=tmp_path, compile=False)
    assert big.ov_manifest.preset == "int4_asym_g128" and "2.00x faster" in big.ov_auto_reason


def test_cpu_probe_measures_both_precisions():
    speeds = int_speeds(size=512, layers=2, calls=3)
    assert set(speeds) == {"int8", "int4"} and all(s > 0 for s in speeds.values())


def test_bad_input(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(OptionError, match="empty"):
        evaluate(DEMO_MODEL, ["int8"], tmp_path / "empty.txt")
    with pytest.raises(OptionError, match="not more than one window"):
        evaluate(DEMO_MODEL, ["int8"], "def f(x):\n    return x\n", window=128)
    with pytest.raises(OptionError, match="window=1"):
        evaluate(DEMO_MODEL, ["int8"], HELDOUT, window=1)
    with pytest.raises(OptionError, match="calibration text has .* tokens; .* needs at least 512"):
        AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="int4_asym_g64_awq", calibration="x = 1\n" * 20)
    with pytest.raises(PresetError, match="data-aware: pass calibration="):
        AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="int4_asym_g128_gptq")
    with pytest.raises(OptionError, match="objective='fast'"):
        tune(DEMO_MODEL, 0.02, "fast")


def test_cli_eval_and_unmet_tune_budget(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "ov_causal", *args], capture_output=True, text=True, timeout=900)

    result = run("eval", str(DEMO_MODEL), "--presets", "int8", "--max-tokens", "512", "--window", "128",
                 "--json", str(tmp_path / "e.json"))
    assert result.returncode == 0, result.stderr
    assert "int8" in result.stdout and json.loads((tmp_path / "e.json").read_text())["rows"][1]["preset"] == "int8"
    result = run("tune", str(DEMO_MODEL), "--presets", "int4_sym_g128", "--max-ppl-increase", "0%",
                 "--max-tokens", "512", "--window", "128")
    assert result.returncode == 3 and "Nothing was chosen" in result.stdout
    result = run("eval", str(DEMO_MODEL), "--presets", "int9")
    assert result.returncode == 2 and "unknown preset 'int9'" in result.stderr


def test_each_preset_gets_its_own_row_name():
    assert row_names(["int8", Compression("int4", group_size=32, ratio=0.8), Compression("int4", group_size=32),
                      Compression("int4", group_size=32), "fp32", "int8"]) == [
        "int8", "int4_asym_g32_r0.8", "int4_asym_g32", "int4_asym_g32-2", "fp32-2", "int8-2"]


def test_two_custom_compressions_are_two_rows():
    custom = [Compression("int4", group_size=32), Compression("int4", sym=True, group_size=32, ratio=0.8)]
    report = evaluate(DEMO_MODEL, custom, HELDOUT, **FAST)
    assert [r.preset for r in report.rows] == ["fp32", "int4_asym_g32", "int4_sym_g32_r0.8"]
    assert report.row("int4_sym_g32_r0.8").weights == "int4 sym g32 ratio=0.8"
    assert "int4_asym_g32" in report.table() and "int4_sym_g32_r0.8" in report.table()


def test_tune_runs_the_fp32_reference_once(monkeypatch, tmp_path):
    """One forward pass of fp32 per window and one greedy continuation per prompt, however many candidates; each
    candidate is compared with the stored results (before, the reference generated again for every candidate)."""
    from ov_causal.tools import evaluate as module

    forwards, continuations, loads = Counter(), Counter(), Counter()
    log_probs, continue_, load = module._log_probs, module._continuations, AutoModelForCausalLM.from_pretrained

    def counted_log_probs(model, ids):
        forwards[model.ov_manifest.compression.describe()] += 1
        return log_probs(model, ids)

    def counted_continuations(model, text):
        continuations[model.ov_manifest.compression.describe()] += 1
        return continue_(model, text)

    def counted_load(*args, **kwargs):
        loads[kwargs.get("preset")] += 1
        return load(*args, **kwargs)

    monkeypatch.setattr(module, "_log_probs", counted_log_probs)
    monkeypatch.setattr(module, "_continuations", counted_continuations)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counted_load)
    result = tune(DEMO_MODEL, 0.5, "size", ("int8", "int4_sym_g128", "int4_asym_g64"), HELDOUT, ov_cache_dir=tmp_path,
                  **FAST)
    windows = result.report.windows
    assert forwards == {"fp32": windows, "int8": windows, "int4 sym g128": windows, "int4 asym g64": windows}
    assert continuations == {"fp32": 1, "int8": 1, "int4 sym g128": 1, "int4 asym g64": 1}
    assert loads["fp32"] == 1
