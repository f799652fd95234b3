"""Made for Jupyter: HTML reprs, progress bars and their switch, results as tables/figures, streaming, event loops."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ov_causal
from ov_causal import AutoModelForCausalLM, OptionError
from ov_causal.tools.bench import BenchReport, BenchRow, Measure
from ov_causal.tools.evaluate import EvalReport, EvalRow
from ov_causal.tools.tune import TuneResult
from ov_causal.ui.display import Table, html_fields, html_table
from ov_causal.ui.progress import PROGRESS_ENV, progress_enabled, stage

PACKAGE = Path(ov_causal.__file__).parent


@pytest.fixture(scope="module")
def model(make_checkpoint):
    return AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int4_asym_g64")


@pytest.fixture(autouse=True)
def _progress_follows_env():
    yield
    ov_causal.set_progress(None)


def _eval_report() -> EvalReport:
    rows = [EvalRow("fp32", "fp32", 10.0, 0.0, 1.0, 0.0, 16.0, 0.0, 16.0, 100.0),
            EvalRow("int8", "int8", 10.1, 0.01, 0.99, 0.001, 12.0, 0.1, 4.2, 150.0),
            EvalRow("int4_sym_g128", "int4 sym g128", 11.0, 0.1, 0.9, 0.05, 3.0, 0.5, 2.5, 180.0)]
    return EvalReport("/models/<tiny>", 1024, 15, 16, rows)


def _bench_report() -> BenchReport:
    m = Measure(0.01, 0.009, 0.012)
    rows = [BenchRow(engine, "int8", m, None, m, Measure(100.0, 90.0, 110.0), m, 300.0, 0.5, 4.2)
            for engine in ("ov_causal-genai", "optimum-intel")]
    return BenchReport("/models/tiny", 32, 16, 3, 2, 10.0, 2000.0, rows, {"llm-pipeline": "<boom>"})


def test_model_shows_an_html_summary_beside_its_repr(model):
    fields = dict(model.summary())
    assert fields["architecture"] == "LlamaForCausalLM (llama)"
    assert fields["parameters"].endswith("M") and float(fields["parameters"][:-1]) > 0.1
    assert fields["preset"] == "int4_asym_g64" and fields["weights"] == "int4 asym" and fields["group size"] == 64
    assert fields["int4 ratio"] == 1.0 and fields["device"] == "CPU" and fields["stateful"] is True
    assert "PERFORMANCE_HINT=LATENCY" in fields["runtime"] and fields["runtime"].startswith("latency")
    assert fields["engine"].startswith("auto") and fields["IR size"].endswith("MiB")
    assert fields["from export cache"].startswith("yes" if model.ov_cache_hit else "no")
    page = model._repr_html_()
    for name in ("architecture", "parameters", "source", "preset", "group size", "int4 ratio", "runtime",
                 "device", "engine", "stateful", "IR size", "from export cache"):
        assert f">{name}</th>" in page
    assert page.startswith("<div><table") and "OVModelForCausalLM(" in repr(model)


def test_html_escapes_every_value():
    page = html_fields([("source", "<script>alert(1)</script>")], caption="a & b")
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    table = html_table(["<col>"], [["<x>", 1.23456, None, True]])
    assert "&lt;col&gt;" in table and "&lt;x&gt;" in table and ">1.235<" in table and ">yes<" in table


def test_presets_runtimes_and_cache_listings_are_tables(model, export_cache):
    presets = ov_causal.presets_table()
    assert isinstance(presets, Table) and [r["preset"] for r in presets.records()] == list(ov_causal.PRESETS)
    assert "<table" in presets._repr_html_() and "int4_asym_g64" in str(presets)
    assert "THROUGHPUT" in ov_causal.runtimes_table()._repr_html_()
    assert "int4_sym_g128" in ov_causal.PRESETS["int4_sym_g128"]._repr_html_()
    assert ">f32<" in ov_causal.RUNTIMES["accuracy"]._repr_html_()
    cache = ov_causal.cache_table()
    assert any(r["preset"] == "int4_asym_g64" and r["state"] == "ok" for r in cache.records())
    assert str(export_cache) in cache._repr_html_()
    frame = cache.to_pandas()
    assert list(frame.columns) == list(cache.columns) and len(frame) == len(cache)


def test_results_have_pandas_json_html_and_a_figure(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    report = _eval_report()
    tuned = TuneResult(report, 0.05, "size", "int8", "int8")
    bench = _bench_report()
    for result in (report, tuned, bench):
        frame = result.to_pandas()
        assert len(frame) == len(result.rows if hasattr(result, "rows") else result.report.rows)
        assert json.loads(result.to_json(tmp_path / "r.json")) == json.loads((tmp_path / "r.json").read_text())
        fig = result.plot(tmp_path / "r.png")
        assert isinstance(fig, Figure) and len(fig.axes) == 2
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
        assert "<table" in result._repr_html_()
    assert plt.get_fignums() == []  # closed in pyplot: Jupyter shows the returned figure once
    assert tuned.to_pandas()["chosen"].tolist() == [False, True, False]
    assert "font-weight:bold" in tuned._repr_html_() and "chosen: int8" in tuned._repr_html_()
    assert "&lt;tiny&gt;" in report._repr_html_() and "&lt;boom&gt;" in bench._repr_html_()
    assert set(bench.to_pandas().columns) >= {"engine", "preset", "decode_tok_s", "ttft_ms"}


def test_to_pandas_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(OptionError, match=r"ov_causal\[notebook\]"):
        _eval_report().to_pandas()


def test_one_switch_silences_the_bars(capfd, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    for enabled in (True, False):
        ov_causal.set_progress(enabled)
        with stage("stage-under-test", total=2) as bar:
            bar.update(2)
        shown = "stage-under-test" in capfd.readouterr().err
        assert shown is enabled
    ov_causal.set_progress(None)
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not progress_enabled()
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert progress_enabled()
    with pytest.raises(TypeError):
        ov_causal.set_progress("no")


def test_export_shows_one_bar_per_stage_and_no_library_bars(make_checkpoint, capfd, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    ov_causal.set_progress(True)
    AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int8", cache=False, compile=False)
    err = capfd.readouterr().err
    assert "export ckpt-llama" in err and "compress to int8" in err
    assert "Loading weights" not in err and "Applying Weight Compression" not in err


def test_stream_prints_as_it_generates_and_returns_the_text(model, capsys):
    greedy = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)
    text = ov_causal.stream(model, "def parse(args):", **greedy)
    printed = capsys.readouterr().out
    inputs = model.tokenizer("def parse(args):", return_tensors="pt")
    expected = model.tokenizer.decode(model.generate(**inputs, **greedy)[0, inputs["input_ids"].shape[1]:],
                                      skip_special_tokens=True)
    assert text == expected and printed.rstrip("\n") == expected.rstrip("\n") and model.last_engine == "genai"
    pipe = ov_causal.pipeline("text-generation", model=model)
    assert ov_causal.stream(pipe, "def parse(args):", **greedy) == expected
    with pytest.raises(OptionError, match="tokenizer"):
        ov_causal.stream(object(), "x")


def test_generate_and_stream_inside_a_running_event_loop(model, capsys):
    """Jupyter runs cells inside an asyncio loop: nothing in our paths may call asyncio.run or block on one."""
    inputs = model.tokenizer("import os\n", return_tensors="pt")

    async def cell() -> tuple[object, str]:
        assert asyncio.get_running_loop().is_running()
        return model.generate(**inputs, max_new_tokens=6), ov_causal.stream(model, "import os\n", max_new_tokens=6)

    out, text = asyncio.run(cell())
    assert out.shape[1] > inputs["input_ids"].shape[1] and isinstance(text, str)
    sources = {p.name: p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py")}
    assert not [name for name, code in sources.items() if "asyncio.run(" in code or "run_until_complete" in code]


def test_import_stays_light():
    code = ("import sys, ov_causal; ov_causal.presets_table(); "
            "print(sorted(m for m in ('tqdm', 'pandas', 'matplotlib', 'torch', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
