"""``bench --against llama.cpp``: workloads, medians and ratios, the report, the missing extra and the CLI's
checks (no llama.cpp needed), then one real run on SmolLM2's GGUF when llama-cpp-python is installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import tomllib

from ov_causal import MissingExtraError, OptionError
from ov_causal.cli import main
from ov_causal.tools import llamacpp, servers, versus
from ov_causal.tools.reports import Measure
from ov_causal.tools.versus_report import REFERENCE, EngineInfo, VersusReport, WorkloadRow
from ov_causal.tools.versus_workloads import (
    WORKLOADS,
    TokenPrompts,
    chat_messages,
    get_workloads,
    rotations,
    run_chat,
    speedup,
)

ROOT = Path(__file__).resolve().parents[1]
HAS_LLAMA_CPP = llamacpp.missing_extra_error() is None  # imports (a build without its dependencies does not)


def test_workloads_are_the_five_classes_in_the_order_asked():
    assert list(WORKLOADS) == ["long-prompt", "chat", "long-generation", "list", "users"]
    chosen = get_workloads(["list", "long-prompt", "list"], users=8)
    assert [w.name for w in chosen] == ["list", "long-prompt"]
    assert get_workloads(["users"], users=8)[0].prompts == 8
    assert WORKLOADS["long-prompt"].prompt_tokens >= 1000 and WORKLOADS["long-prompt"].new_tokens == 16
    assert WORKLOADS["long-generation"].new_tokens == 256 and WORKLOADS["list"].prompts == 16
    with pytest.raises(OptionError, match="Did you mean 'long-generation'"):
        get_workloads(["long_gen"])
    assert get_workloads(["long_prompt"])[0].name == "long-prompt"  # tune's spelling and the underscore one
    with pytest.raises(OptionError, match="at least 1"):
        get_workloads(["users"], users=0)


def test_chat_context_covers_every_turn():
    chat = WORKLOADS["chat"]
    messages = chat_messages(chat, TokenPrompts(1000))
    assert len(messages) == chat.turns
    assert chat.context_tokens() == sum(map(len, messages)) + chat.turns * chat.new_tokens


def test_prompts_are_fresh_and_in_the_vocabulary():
    prompts = TokenPrompts(50, seed=3)
    first, second = prompts.ids(200), prompts.ids(200)
    assert first != second
    assert min(first + second) >= 3 and max(first + second) < 50
    assert TokenPrompts(50, seed=3).ids(200) == first  # seeded: the same run draws the same prompts
    with pytest.raises(OptionError):
        TokenPrompts(3)


def test_rotations_put_each_engine_first_equally_often():
    orders = rotations(["a", "b", "c"], 6)
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    firsts = [o[0] for o in orders]
    assert {n: firsts.count(n) for n in "abc"} == {"a": 2, "b": 2, "c": 2}
    assert rotations(["a", "b"], 2) == [["a", "b"], ["b", "a"]]


def test_chat_history_grows_with_the_engines_own_answers():
    seen: list[list[int]] = []

    def generate(ids, n):
        seen.append(list(ids))
        return [len(seen)] * n  # an answer the next turn must carry

    ticks = iter(range(100))
    times = run_chat(generate, [[1, 2], [3], [4]], 2, lambda: float(next(ticks)))
    assert seen == [[1, 2], [1, 2, 1, 1, 3], [1, 2, 1, 1, 3, 2, 2, 4]]
    assert times == [1.0, 1.0]  # turns 2 and 3 only: the first turn has nothing to reuse


class FakeRunner:
    def __init__(self, name):
        self.engine, self.weights, self.weight_bytes = name, "fake", 2**20
        self.calls = []

    def generate(self, ids, n):
        self.calls.append(("one", tuple(ids), n))
        return list(range(n))

    def generate_list(self, prompts, n):
        self.calls.append(("list", tuple(map(tuple, prompts)), n))

    def close(self):
        pass


def test_measure_gives_every_engine_the_same_prompts_each_run():
    runners = {"x": FakeRunner("x"), "y": FakeRunner("y")}
    for workload in get_workloads(["long-prompt", "list", "chat"]):
        times = versus.measure(workload, runners, TokenPrompts(500), runs=3)
        assert {k: len(v) for k, v in times.items()} == {"x": 3, "y": 3}
    assert runners["x"].calls == runners["y"].calls
    lists = [c for c in runners["x"].calls if c[0] == "list"]
    assert len(lists) == 3 and all(len(c[1]) == 16 and c[2] == 32 for c in lists)
    long = [c for c in runners["x"].calls if c[0] == "one" and len(c[1]) == 1024]
    assert len(long) == 3 and len({c[1] for c in long}) == 3  # fresh prompts each run


def _report(ref=(2.0, 2.2, 1.8), ours=(1.0, 1.1, 0.9)) -> VersusReport:
    engines = [EngineInfo(REFERENCE, "Q8_0 (GGUF)", 100.0, 2), EngineInfo("ov_causal int8", "int8", 110.0, 2)]
    rows = [WorkloadRow("long-prompt", "long prompt", "1024-token prompt", {REFERENCE: Measure.of(ref),
                        "ov_causal int8": Measure.of(ours)}, 16),
            WorkloadRow("long-generation", "long generation", "32-token prompt", {REFERENCE: Measure.of([4.0]),
                        "ov_causal int8": Measure.of([8.0])}, 256),
            WorkloadRow("users", "4 users", "4 x", {REFERENCE: None, "ov_causal int8": None}, 256,
                        {REFERENCE: "llama-server is not on the PATH", "ov_causal int8": "same"})]
    return VersusReport("m", "m.gguf", 2, 3, engines, rows, 20.0, (1.0, 2.0), "same file")


def test_ratios_are_llama_cpp_time_over_ours_from_medians():
    report = _report()
    assert report.ratios()["long-prompt"]["ov_causal int8"] == pytest.approx(2.0)
    assert report.ratios()["long-generation"]["ov_causal int8"] == pytest.approx(0.5)
    assert report.ratios()["users"]["ov_causal int8"] is None
    assert speedup(None, 1.0) is None and speedup(3.0, 1.5) == 2.0
    # 256 tokens in 4 s reading 100 MiB each: 6.7 GB/s
    assert report.decode_gb_s(report.engines[0]) == pytest.approx(100 * 2**20 * 64 / 1e9)
    table = report.table()
    assert "(2.00x)" in table and "(0.50x)" in table and "skipped users on llama.cpp: llama-server" in table


def test_report_json_pandas_html_and_plot(tmp_path):
    report = _report()
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert data["ratios"]["long-prompt"]["ov_causal int8"] == pytest.approx(2.0)
    assert data["rows"][0]["seconds"][REFERENCE]["median"] == pytest.approx(2.0)
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert "ov_causal int8" in report._repr_html_()
    pytest.importorskip("matplotlib")
    report.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_missing_extra_names_the_extra_and_the_compile(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(MissingExtraError, match=r"ov_causal\[llamacpp\].*compiles llama.cpp from source"):
        llamacpp.llama_cpp()
    assert isinstance(llamacpp.missing_extra_error(), MissingExtraError)
    with pytest.raises(MissingExtraError):  # before any conversion or load
        versus.bench_against(tmp_path / "none.gguf")


def test_no_converter_and_no_gguf_says_pass_gguf(monkeypatch, tmp_path):
    monkeypatch.setattr(llamacpp.shutil, "which", lambda name: None)
    with pytest.raises(OptionError, match="--gguf FILE"):
        llamacpp.convert_to_gguf(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(OptionError, match="llama-quantize"):
        llamacpp.convert_to_gguf(tmp_path, tmp_path / "x.gguf", "q4_0", converter=__file__)
    with pytest.raises(OptionError, match="q8_0"):
        llamacpp.convert_to_gguf(tmp_path, tmp_path / "x.gguf", "q3_xs")


def test_read_gguf_names_type_pairing_and_bytes(tmp_path):
    pytest.importorskip("gguf", reason="reading GGUF headers needs the gguf package")
    from .smollm2 import installed_gguf, models_root

    gguf = installed_gguf() or models_root() / "wheels" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        pytest.skip("the SmolLM2 GGUF is not downloaded (tests/smollm2.py fetches it for test_smollm2)")
    info = llamacpp.read_gguf(gguf)
    assert (info.file_type, info.paired_preset, info.vocab_size) == ("Q4_1", "int4_asym_g64", 49152)
    assert 0.9 * gguf.stat().st_size < info.tensor_bytes < gguf.stat().st_size
    (tmp_path / "x.gguf").write_bytes(b"not gguf")
    with pytest.raises(Exception, match="cannot be read as GGUF"):
        llamacpp.read_gguf(tmp_path / "x.gguf")


def test_llamacpp_extra_is_not_in_the_test_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("llama-cpp-python") for r in extras["llamacpp"])
    assert not any("llama" in r or "llamacpp" in r for r in extras["test"])


@pytest.mark.parametrize("argv, message", [
    (["bench", "--gguf", "x.gguf"], "only go with --against"),
    (["bench", "--against", "llama.cpp"], "needs MODEL"),
    (["bench", "missing.gguf", "--against", "llama.cpp"], "does not exist"),
    (["bench", __file__, "--against", "llama.cpp"], "is a file"),
    (["bench", str(ROOT), "--against", "llama.cpp", "--threads", "0"], "at least 1"),
    (["bench", str(ROOT), "--against", "llama.cpp", "--workloads", "chat,lists"], "'lists'"),
    (["bench", str(ROOT), "--against", "llama.cpp", "--gguf", "nope.gguf"], "--gguf 'nope.gguf' does not exist"),
])
def test_cli_argument_errors(argv, message, capsys, tmp_path):
    if argv[1] == str(ROOT):  # a folder that holds a checkpoint
        (tmp_path / "config.json").write_text("{}")
        (tmp_path / "model.safetensors").write_bytes(b"")
        argv = [argv[0], str(tmp_path)] + argv[2:]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_an_unknown_engine(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "m.gguf", "--against", "vllm"])
    assert "llama.cpp" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed (pip install \"ov_causal[llamacpp]\" "
                                              "compiles it from source, ~12 min); CI skips this run")
def test_against_llama_cpp_on_smollm2_gguf(smollm2_checkpoint, monkeypatch, tmp_path):
    from .smollm2 import installed_gguf, models_root

    gguf = installed_gguf() or models_root() / "wheels" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    monkeypatch.setattr(servers, "LLAMA_SERVER", "no-such-llama-server")
    report = versus.bench_against(smollm2_checkpoint, gguf=gguf, threads=2, runs=1,
                                  workloads=["long-prompt", "chat", "list", "users"])
    names = [e.name for e in report.engines]
    assert names == [REFERENCE, versus.GGUF_ENGINE, "ov_causal int4_asym_g64"], report.failures
    assert "Q4_1" in report.pairing and "int4_asym_g64" in report.pairing
    for row in report.rows[:3]:
        assert all(row.seconds[n] is not None and row.seconds[n].median > 0 for n in names)
        for name in names[1:]:
            assert row.ratio(name) == pytest.approx(row.seconds[REFERENCE].median / row.seconds[name].median)
    assert "no-such-llama-server is not on the PATH" in report.row("users").skipped[REFERENCE]
    data = json.loads(report.to_json())
    assert set(data["ratios"]["chat"]) == set(names[1:])
    pytest.importorskip("matplotlib")
    report.plot(tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed; CI skips this run")
def test_both_engines_write_exactly_the_tokens_asked():
    from .smollm2 import installed_gguf, models_root

    gguf = installed_gguf() or models_root() / "wheels" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    info = llamacpp.read_gguf(gguf)
    ids = TokenPrompts(info.vocab_size).ids(24)
    ours, theirs = versus.load_gguf_openvino(info, 2), llamacpp.LlamaCppRunner(info, 2, 256)
    a, b = ours.generate(ids, 12), theirs.generate(ids, 12)
    assert len(a) == len(b) == 12  # EOS ignored on both: the same count (tokens may differ on random-id prompts)
