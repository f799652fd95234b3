"""The export cache: hits across processes, misses on edits, one entry under concurrency, crash safety."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.build.cache import cache_root
from ov_causal.build.cache_entries import list_entries


@pytest.fixture
def count_exports(monkeypatch):
    import optimum.exporters.openvino as exporters

    calls = []
    original = exporters.main_export

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(exporters, "main_export", counting)
    return calls


def test_second_load_is_a_hit_without_export(make_checkpoint, tmp_path, count_exports):
    first = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    second = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    assert (first.ov_cache_hit, second.ov_cache_hit) == (False, True)
    assert len(count_exports) == 1
    assert second.model_save_dir == first.model_save_dir
    assert any((first.model_save_dir / "compiled").iterdir()), "compiled-model cache (CACHE_DIR) is unused"
    assert second.ov_config["CACHE_DIR"] == str(first.model_save_dir / "compiled")
    other = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp16", ov_cache_dir=tmp_path)
    assert other.ov_cache_hit is False and len(count_exports) == 2
    assert len(list_entries(tmp_path)) == 2


def test_cache_false_and_location_from_environment(make_checkpoint, tmp_path, monkeypatch, count_exports):
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), cache=False, compile=False)
    assert model.ov_cache_hit is None and "CACHE_DIR" not in model.ov_config
    monkeypatch.setenv("OV_CAUSAL_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    AutoModelForCausalLM.from_pretrained(make_checkpoint(), compile=False)
    assert len(list_entries(tmp_path / "env")) == 1
    monkeypatch.delenv("OV_CAUSAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ov_causal"


def test_edited_checkpoint_is_a_miss(make_checkpoint, tmp_path, count_exports):
    folder = tmp_path / "ckpt"
    shutil.copytree(make_checkpoint(), folder)
    AutoModelForCausalLM.from_pretrained(folder, ov_cache_dir=tmp_path / "c", compile=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    edited = AutoModelForCausalLM.from_pretrained(folder, ov_cache_dir=tmp_path / "c", compile=False)
    assert edited.ov_cache_hit is False and len(count_exports) == 2


def test_damaged_entry_is_rebuilt_with_a_warning(make_checkpoint, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), ov_cache_dir=tmp_path, compile=False)
    weights = model.model_save_dir / "openvino_model.bin"
    del model
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.warns(UserWarning, match="damaged .*openvino_model.bin has .* bytes"):
        again = AutoModelForCausalLM.from_pretrained(make_checkpoint(), ov_cache_dir=tmp_path)
    assert again.ov_cache_hit is False
    assert again.generate(**again.tokenizer(["x = 1"], return_tensors="pt"), max_new_tokens=2).shape[1] > 2


CHILD = textwrap.dedent(
    """
    import sys, time
    import optimum.exporters.openvino as exporters
    from ov_causal import AutoModelForCausalLM
    if sys.argv[3] == "stall":
        original = exporters.main_export
        def stalled(*args, **kwargs):
            original(*args, **kwargs)
            print("EXPORTED", flush=True)
            time.sleep(600)
        exporters.main_export = stalled
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], ov_cache_dir=sys.argv[2], compile=False)
    print("HIT" if model.ov_cache_hit else "MISS", flush=True)
    """
)


def _child(checkpoint, root, mode="plain") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(checkpoint), str(root), mode], stdout=subprocess.PIPE, text=True
    )


def test_two_processes_loading_at_once_make_one_entry(make_checkpoint, tmp_path):
    children = [_child(make_checkpoint(), tmp_path) for _ in range(2)]
    outputs = sorted(child.communicate(timeout=600)[0].split()[-1] for child in children)
    assert [c.returncode for c in children] == [0, 0]
    assert outputs == ["HIT", "MISS"]
    assert len(list_entries(tmp_path)) == 1


def test_killed_export_leaves_no_trusted_entry(make_checkpoint, tmp_path):
    child = _child(make_checkpoint(), tmp_path, "stall")
    assert child.stdout.readline().strip() == "EXPORTED"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    entries = tmp_path / "entries"
    assert [p.name for p in entries.iterdir() if not p.name.startswith(".")] == []
    assert [p for p in entries.iterdir() if ".partial-" in p.name], "the killed export's staging folder"
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), ov_cache_dir=tmp_path, compile=False)
    assert model.ov_cache_hit is False
    assert not [p for p in entries.iterdir() if ".partial-" in p.name]


def test_cache_command_lists_shows_and_clears(make_checkpoint, tmp_path):
    AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path, compile=False)

    def run(*args):
        result = subprocess.run(
            [sys.executable, "-m", "ov_causal", "cache", *args, "--cache-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=120,
        )
        return result.returncode, result.stdout + result.stderr

    code, out = run("list")
    assert code == 0 and "1 entries" in out and "int8" in out and "ckpt-llama" in out and " ok" in out
    key = list_entries(tmp_path)[0].key
    code, out = run("info", key[:8])
    assert code == 0 and '"compression"' in out and "state: ok" in out
    code, out = run("clear", "--older-than", "1d")
    assert code == 0 and "removed 0 entries" in out
    code, out = run("clear", "--older-than", "soon")
    assert code == 2 and "--older-than 'soon' is not valid" in out
    code, out = run("clear")
    assert code == 0 and "removed 1 entry" in out and list_entries(tmp_path) == []
