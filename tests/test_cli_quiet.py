"""Quiet, early and clear (issue 21, item 5): refusals before the model loads, Ctrl-C as one line and exit status
130 with nothing half-written, did-you-mean among the names that share the user's start, conflicts in the user's
own words, a misspelt option with its command's usage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ov_causal import AutoModelForCausalLM, OptionError, PresetError
from ov_causal.cli import COMMANDS, main
from ov_causal.cli.common import EXIT_INTERRUPTED
from ov_causal.config.hub import resolve_hf_kwargs
from ov_causal.config.presets import PRESETS
from ov_causal.errors import suggest

from .test_cli import _run_main

ROOT = Path(__file__).resolve().parent.parent
INT4 = [name for name in PRESETS if name.startswith("int4")]
INT4_SHOWN = ", ".join([repr(n) for n in INT4[:8]] + (["..."] if len(INT4) > 8 else []))  # suggest shows 8 at most


def test_export_into_a_non_empty_folder_is_refused_before_the_model_loads(make_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    for extra in ([], ["--for", "ovms"]):
        result, seconds = _run_main("export", str(make_checkpoint("llama")), str(out), *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (f"ov-causal: error: {str(out)!r} exists and is not empty. Pass an empty or new "
                                 "folder, or --force (force=True) to write into it (files of the same names are "
                                 "replaced, others kept).\n")
        assert result.stdout.strip() == "HEAVY []", result.stdout  # torch, optimum, openvino: none imported
        assert seconds < 5, seconds
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("export", "org/model", "{tmp}/new", "--name", "x"), "--name only apply with --for ovms."),
        (("export", "org/model", "{tmp}/new", "--for", "ovms", "--device", "G P U"), "not an OpenVINO device name"),
        (("export", "org/model", "{tmp}/new", "--for", "ovms", "--plugin-config", "[1]"), "must be a JSON object"),
        (("export", "org/a b", "{tmp}/new", "--for", "ovms"), "model name 'a b' is not valid"),
        (("eval", "org/model", "--text", "{tmp}/missing.txt"), "--text '{tmp}/missing.txt' does not exist"),
        (("tune", "org/model", "--calibration", "{tmp}"), "--calibration '{tmp}' is a folder"),
        (("eval", "org/model", "--json", "{tmp}/no/such/r.json"), "is no folder. Pass a file path in an existing"),
        (("bench", "--plot", "{tmp}"), "--plot '{tmp}' is a folder"),
        (("serve", "org/model", "--chat-template", "{tmp}/t.jinja"), "--chat-template '{tmp}/t.jinja' does not"),
    ],
)
def test_cheap_checks_come_before_any_heavy_import(args, expected, tmp_path):
    result, _ = _run_main(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("ov-causal: error: ") and expected.format(tmp=tmp_path) in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout.strip() == "HEAVY []", (result.stderr, result.stdout)
    assert not (tmp_path / "new").exists()


def test_a_misspelt_option_gets_the_commands_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--modle", "org/model"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("usage: ov-causal generate ")  # the command's usage, not 'usage: ov-causal [-h] ...'
    assert "ov-causal generate: error: unrecognized arguments: --modle" in err and "Did you mean '--model'?" in err
    with pytest.raises(SystemExit):
        main(["serve", "org/model", "--no-rya"])
    err = capsys.readouterr().err
    assert err.startswith("usage: ov-causal serve ") and "Did you mean '--no-ray'?" in err
    with pytest.raises(SystemExit):
        main(["export", "org/model", "out", "--forse=1"])
    assert "Did you mean '--force'?" in capsys.readouterr().err


def test_did_you_mean_offers_the_names_that_share_the_users_start():
    assert suggest("int4", PRESETS) == f" Did you mean one of {INT4_SHOWN}?"
    assert suggest("fp", PRESETS) == " Did you mean 'fp32' or 'fp16'?"
    assert suggest("int5", PRESETS) == " Did you mean 'int8'?"  # a close spelling, no shared start
    assert suggest("int4_asmy_g64", PRESETS) == " Did you mean 'int4_asym_g64'?"
    assert suggest("INT8", PRESETS) == " Did you mean 'int8'?"
    assert suggest("int4sym", PRESETS).startswith(" Did you mean one of 'int4_sym_g64', 'int4_sym_g128', ")
    assert suggest("xyz", PRESETS) == ""
    long = [f"name_{i}" for i in range(12)]
    assert suggest("name", long).endswith("'name_7', ...?")  # a long list is cut


def test_a_preset_named_by_its_kind_suggests_the_presets_of_that_kind(make_checkpoint):
    with pytest.raises(PresetError) as info:
        AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int4")
    assert f"unknown preset 'int4'. Did you mean one of {INT4_SHOWN}?" in str(info.value)
    assert all(name in str(info.value) for name in INT4)  # every one of them in the full list that follows
    assert "'int8'?" not in str(info.value)
    result, _ = _run_main("generate", "--preset", "int4")
    assert "Did you mean one of 'int4_sym_g128'" in result.stderr and result.stdout.strip() == "HEAVY []"


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("quantize", "Did you mean 'preset' or 'quantization_config'?"),  # transformers/optimum words for ours
        ("load_in_4bit", "Did you mean 'preset' or 'quantization_config'?"),
        ("weight_format", "Did you mean 'preset' or 'quantization_config'?"),
        ("adapter", "Did you mean 'lora'?"),
        ("presets", "Did you mean 'preset'?"),
        ("devce", "Did you mean 'device'?"),
        ("calib", "Did you mean 'calibration'?"),
    ],
)
def test_an_unknown_keyword_suggests_what_was_meant(keyword, expected):
    with pytest.raises(OptionError) as info:
        resolve_hf_kwargs({keyword: "int4"})
    assert f"unknown keyword {keyword!r}. {expected}" in str(info.value)
    assert "'runtime'" not in str(info.value).split("ov_causal keywords")[0]


def test_quantize_through_from_pretrained(make_checkpoint):
    with pytest.raises(OptionError, match=r"unknown keyword 'quantize'\. Did you mean 'preset' or "
                                          r"'quantization_config'\?"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), quantize="int4")


def test_a_conflict_is_reported_in_the_users_own_words(make_checkpoint):
    checkpoint = make_checkpoint("llama")
    with pytest.raises(PresetError) as info:
        AutoModelForCausalLM.from_pretrained(checkpoint, preset="int4_asym_g64", load_in_8bit=True)
    assert str(info.value).startswith("preset='int4_asym_g64', load_in_8bit=True (int8) ask for different")
    assert "load_in_8bit='int8'" not in str(info.value)
    with pytest.raises(PresetError, match=r"preset='int8', load_in_8bit=False \(fp32\) ask"):
        AutoModelForCausalLM.from_pretrained(checkpoint, preset="int8", load_in_8bit=False)
    with pytest.raises(PresetError, match=r"preset='int8', quantization_config=\{'bits': 4, 'sym': True\} "
                                          r"\(int4_sym_g128\) ask"):
        AutoModelForCausalLM.from_pretrained(checkpoint, preset="int8", quantization_config={"bits": 4, "sym": True})
    from optimum.intel import OVWeightQuantizationConfig

    with pytest.raises(PresetError, match=r"quantization_config=OVWeightQuantizationConfig\(bits=4, sym=True, "
                                          r"group_size=64"):
        AutoModelForCausalLM.from_pretrained(checkpoint, load_in_8bit=True, preset="int8",
                                             quantization_config=OVWeightQuantizationConfig(bits=4, sym=True,
                                                                                            group_size=64))


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_ctrl_c_in_any_command_is_one_line_and_status_130(module, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "check", lambda args: None)
    monkeypatch.setattr(module, "run", interrupted)
    parser_args = {"generate": ["generate"], "cache": ["cache", "list"], "fuse_lora": ["fuse-lora", "b", "a", "--out",
                   "o"], "evaluate": ["eval", "m"], "tune": ["tune", "m"], "serve": ["serve", "m"],
                   "export": ["export", "m", "o"], "bench": ["bench"]}[module.__name__.rsplit(".", 1)[-1]]
    assert main(parser_args) == EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert captured.err == "Interrupted.\n" and captured.out == ""


# The ov-causal script as a terminal starts it: Ctrl-C raises KeyboardInterrupt. (A script's background job starts
# with SIGINT ignored, and a child inherits that; a terminal's foreground command does not.)
TERMINAL = """import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from ov_causal.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _partials(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if ".partial-" in p.name]


def test_ctrl_c_during_an_export_leaves_nothing_half_written(make_checkpoint, tmp_path):
    cache, target = tmp_path / "cache", tmp_path / "exports" / "tiny"
    target.parent.mkdir()
    env = {**os.environ, "OV_CAUSAL_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", TERMINAL, "export", str(make_checkpoint("llama")), str(target)]
    child = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not _partials(cache, target.parent) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _partials(cache, target.parent), "the export never started building a folder"
        child.send_signal(signal.SIGINT)  # mid-export: its folder is being built
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert err.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1] == "Interrupted.", err
    assert "Traceback" not in err and out == ""
    assert _partials(cache, target.parent) == [] and not target.exists()
    entries = cache / "entries"
    assert not entries.exists() or [p.name for p in entries.iterdir()] == []  # no entry, complete or not
    again = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (target / "openvino_model.xml").is_file() and _partials(cache, target.parent) == []
