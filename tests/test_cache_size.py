"""The export cache's size (issue 21): compiled blobs, what `cache list` shows, the LRU size cap and its safety."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.convert.cache_entries import list_entries, prune
from ov_causal.convert.integrity import ENTRIES_DIR
from ov_causal.errors import CacheError, OptionError

ROOT = Path(__file__).resolve().parents[1]


def _disk(folder: Path) -> int:
    """Bytes of every file under ``folder`` (links not followed), as ``du --apparent-size`` counts them."""
    return sum((Path(base) / name).lstat().st_size for base, _, names in os.walk(folder) for name in names)


def _ir(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.glob("openvino_model.*"))


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "ov_causal", "cache", *args, "--cache-dir", str(root)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout + result.stderr


def test_three_presets_take_at_most_one_and_a_half_times_their_irs(make_checkpoint, tmp_path):
    """Before: GenAI's paged-attention blob (IR-sized, rewritten on every load) sat beside each IR: ~2x."""
    irs = 0
    for preset in ("fp32", "int8", "int4_sym_g128"):
        for _ in range(2):  # the second load is a cache hit: it must not add a blob either
            model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=preset, ov_cache_dir=tmp_path)
            inputs = model.tokenizer(["def parse(args):"], return_tensors="pt")
            model.generate(**inputs, max_new_tokens=4)
            assert model.last_engine == "genai"
        irs += _ir(model.model_save_dir)
        del model
    assert len(list_entries(tmp_path)) == 3
    assert _disk(tmp_path) <= 1.5 * irs, (_disk(tmp_path), irs)


def test_one_blob_per_entry_and_device(make_checkpoint, tmp_path):
    """The transformers loop's blob is kept (it loads), once per device: a compile that writes a new one removes the
    entry's older blobs of that device (another runtime, another ov_config), not another device's."""
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    compiled = model.model_save_dir / "compiled"
    assert not list(compiled.glob("*.blob")), "GenAI's engine wrote a blob on CPU"
    inputs = model.tokenizer(["def parse(args):"], return_tensors="pt")
    model(**inputs)
    (blob,) = compiled.glob("*.blob")
    assert json.loads((compiled / "devices.json").read_text()) == {blob.name: "CPU"}
    del model
    again = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    (compiled / "123.blob").write_bytes(b"a GPU blob")
    (compiled / "devices.json").write_text(json.dumps({blob.name: "CPU", "123.blob": "GPU"}))
    again(**inputs)  # loaded from the blob: nothing written, nothing removed
    assert sorted(p.name for p in compiled.glob("*.blob")) == sorted(["123.blob", blob.name])
    del again
    blob.rename(compiled / "999.blob")  # stands for a CPU blob compiled with other properties
    other = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    other(**inputs)  # misses, writes its blob: the older CPU one goes, the GPU one stays
    assert sorted(p.name for p in compiled.glob("*.blob")) == sorted(["123.blob", blob.name])
    assert json.loads((compiled / "devices.json").read_text()) == {blob.name: "CPU", "123.blob": "GPU"}


def test_cache_list_shows_sizes_lora_and_total(make_checkpoint, tmp_path):
    from tests.test_lora import _make_adapter

    adapter = _make_adapter(make_checkpoint, tmp_path / "adapter-x", seed=3)
    AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp32", ov_cache_dir=tmp_path / "c", compile=False)
    AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp32", lora=[(adapter, 0.5)],
                                         ov_cache_dir=tmp_path / "c", compile=False)
    entries = list_entries(tmp_path / "c")
    fused = [e for e in entries if e.adapters]
    assert len(fused) == 1 and fused[0].adapters == ((str(adapter), 0.5),) and fused[0].what == "fp32 + 1 LoRA"
    for entry in entries:
        assert entry.size == _disk(entry.folder)
    code, out = _cli(tmp_path / "c", "list")
    assert code == 0 and "2 entries" in out, out
    assert f"LoRA {adapter} (weight 0.5)" in out and "fp32 + 1 LoRA" in out
    lines = {e.key[:12]: next(line for line in out.splitlines() if line.startswith(e.key[:12])) for e in entries}
    for entry in entries:
        assert f"{entry.size / 2**20:,.1f} MiB" in lines[entry.key[:12]]
    total = sum(e.size for e in entries)
    assert f"total {total / 2**20:,.1f} MiB" in out and "no cap" in out
    import ov_causal

    table = ov_causal.cache_table(tmp_path / "c")
    assert [r["LoRA"] for r in table.records() if r["LoRA"]] == [f"{adapter} (weight 0.5)"]
    assert f"{total / 2**30:,.2f} GiB" in table.caption


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ov_causal.convert.cache_locks import hold_entry
    handle = hold_entry(Path(sys.argv[1]))
    print("held", handle is not None, flush=True)
    time.sleep(120)
    """
)


def _entries_by_age(make_checkpoint, root: Path, presets: tuple[str, ...]) -> list[Path]:
    """One entry per preset, the first the least recently used (its last_used set back in time).

    The ages are set once all are loaded: a compressed preset is derived from the fp32 entry, which reads (uses) it.
    """
    folders = []
    for preset in presets:
        model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=preset, ov_cache_dir=root,
                                                     compile=False)
        folders.append(model.model_save_dir)
        del model
    for age, folder in zip(range(len(presets), 0, -1), folders):
        (folder / "last_used").write_text(str(time.time() - 3600 * age))
    gc.collect()  # a model holds its entry in use until collected
    return folders


def test_the_cap_evicts_the_least_recently_used_entry_not_one_in_use(make_checkpoint, tmp_path):
    oldest, middle, newest = _entries_by_age(make_checkpoint, tmp_path, ("fp32", "fp16", "int8"))
    total = _disk(tmp_path / ENTRIES_DIR)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(oldest)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held True"
        pruned = prune(tmp_path, total - 1)  # one entry must go: the oldest is in use, the next one goes
        assert [e.folder for e in pruned.removed] == [middle] and [e.folder for e in pruned.in_use] == [oldest]
        assert oldest.is_dir() and not middle.exists() and newest.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert [e.folder for e in prune(tmp_path, 1).removed] == [oldest, newest]


def test_a_new_entry_over_the_cap_evicts_with_a_warning(make_checkpoint, tmp_path, monkeypatch):
    base, int8 = _entries_by_age(make_checkpoint, tmp_path, ("fp32", "int8"))
    monkeypatch.setenv("OV_CAUSAL_CACHE_MAX_GB", "nonsense")
    with pytest.raises(OptionError, match="OV_CAUSAL_CACHE_MAX_GB='nonsense' is not a size"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp16", ov_cache_dir=tmp_path, compile=False)
    # fp16 (half of fp32) is derived from the fp32 entry, which that makes the most recently used: the cap, the size
    # before, holds fp16 once int8 (the least recently used) and then fp32 are gone; the entry just built stays.
    cap = _disk(tmp_path / ENTRIES_DIR) / 2**30
    monkeypatch.setenv("OV_CAUSAL_CACHE_MAX_GB", repr(cap))
    with pytest.warns(UserWarning, match=r"removed 2 least recently used entries \([\d.,]+ MiB freed\): "
                                         rf"{int8.name[:12]} int8 of .*{base.name[:12]} fp32 of .*"
                                         r"OV_CAUSAL_CACHE_MAX_GB sets the cap"):
        model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp16", ov_cache_dir=tmp_path,
                                                     compile=False)
    assert not int8.exists() and not base.exists() and model.model_save_dir.is_dir()
    code, out = _cli(tmp_path, "list", env={"OV_CAUSAL_CACHE_MAX_GB": repr(cap)})
    assert code == 0 and "1 entr" in out and f"cap {cap:,.2f} GiB" in out
    monkeypatch.setenv("OV_CAUSAL_CACHE_MAX_GB", "0")  # the entry just built is never evicted, nor a loaded one
    busy = f"still over the cap; in use by running processes: {model.model_save_dir.name[:12]}"
    with pytest.warns(UserWarning, match=busy):
        again = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int4_sym_g128", ov_cache_dir=tmp_path,
                                                     compile=False)
    assert model.model_save_dir.is_dir() and again.model_save_dir.is_dir()
    del model, again
    gc.collect()
    code, out = _cli(tmp_path, "prune", "--max-gb", "0")
    assert code == 0 and re.search(r"removed \d+ least recently used entr", out) and list_entries(tmp_path) == []
    code, out = _cli(tmp_path, "list", "--max-gb", "1")
    assert code == 2 and "--max-gb goes with 'cache prune'" in out
    import ov_causal

    with pytest.raises(OptionError, match="max_gb=-1 is not a size"):
        ov_causal.prune_cache(max_gb=-1, ov_cache_dir=tmp_path)
    monkeypatch.delenv("OV_CAUSAL_CACHE_MAX_GB")
    with pytest.raises(OptionError, match="needs the size to fit in"):
        ov_causal.prune_cache(ov_cache_dir=tmp_path)


def test_eviction_never_removes_anything_outside_the_cache(make_checkpoint, tmp_path):
    root, outside = tmp_path / "cache", tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (entry,) = _entries_by_age(make_checkpoint, root, ("fp32",))
    (entry / "compiled").mkdir(exist_ok=True)
    (entry / "compiled" / "1.blob").symlink_to(outside / "data.txt")  # a link inside an entry
    (entry / "compiled" / "dir").symlink_to(outside, target_is_directory=True)
    linked = root / ENTRIES_DIR / ("f" * 32)
    linked.symlink_to(outside, target_is_directory=True)  # an "entry" that is a link to a folder elsewhere
    pruned = prune(root, 0)
    assert len(pruned.removed) == 2 and not entry.exists() and not linked.is_symlink()
    assert (outside / "data.txt").read_text() == "keep me"
    moved = tmp_path / "entries-elsewhere"
    (entry,) = _entries_by_age(make_checkpoint, root, ("fp32",))
    (root / ENTRIES_DIR).rename(moved)
    (root / ENTRIES_DIR).symlink_to(moved, target_is_directory=True)
    with pytest.raises(CacheError, match="is a symbolic link: entries are not evicted through it"):
        prune(root, 0)
    assert (moved / entry.name).is_dir()
