"""A full disk during export: a clear ExportError (folder, space needed, OV_CAUSAL_CACHE_DIR), nothing left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.config.presets import PRESETS
from ov_causal.convert.diskspace import disk_full_error, export_bytes
from ov_causal.errors import ExportError


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _assert_disk_message(message: str, folder: Path) -> None:
    assert str(folder) in message
    assert "OV_CAUSAL_CACHE_DIR" in message
    assert "needed" in message and "free" in message
    assert "loads with transformers" not in message


def _assert_nothing_left(root: Path) -> None:
    entries = root / "entries"
    left = sorted(p.name for p in entries.iterdir()) if entries.is_dir() else []
    assert left == [], f"left in the cache: {left}"


def _patch_compress_save(monkeypatch):
    import openvino

    monkeypatch.setattr(openvino, "save_model", _enospc)  # compress_folder's write; main_export has its own name


def _patch_main_export(monkeypatch):
    monkeypatch.setattr("optimum.exporters.openvino.main_export", _enospc)


def _patch_publish(monkeypatch):
    monkeypatch.setattr("ov_causal.convert.export.publish", _enospc)


def _patch_cache_records(monkeypatch):
    monkeypatch.setattr("ov_causal.convert.cache.file_records", _enospc)


@pytest.mark.parametrize("patch", [_patch_main_export, _patch_compress_save, _patch_publish, _patch_cache_records],
                         ids=["main_export", "compress", "publish", "cache-records"])
def test_enospc_at_any_step(make_checkpoint, tmp_path, monkeypatch, patch):
    root = tmp_path / "cache"
    with monkeypatch.context() as patched:
        patch(patched)
        with pytest.raises(ExportError) as info:
            AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int8", ov_cache_dir=root,
                                                 compile=False)
    assert "not enough disk space" in str(info.value)
    _assert_disk_message(str(info.value), root / "entries" if patch is not _patch_cache_records else root)
    _assert_nothing_left(root)
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int8", ov_cache_dir=root,
                                                 compile=False)  # the next load, with space, works
    assert model.ov_cache_hit is False and (root / "entries").is_dir()


def test_iostream_error_on_a_full_disk_is_named(make_checkpoint, tmp_path, monkeypatch):
    """OpenVINO reports a full disk as 'basic_ios::clear: iostream error': told apart by the free space left."""
    import openvino

    free = {"bytes": 1 << 40}

    def failing_write(*args, **kwargs):
        free["bytes"] = 4096  # the write filled the disk
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp: basic_ios::clear: iostream error")

    monkeypatch.setattr("ov_causal.convert.diskspace.free_bytes", lambda folder: free["bytes"])
    monkeypatch.setattr(openvino, "save_model", failing_write)
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int8", ov_cache_dir=tmp_path,
                                             compile=False)
    _assert_disk_message(str(info.value), tmp_path / "entries")
    assert "iostream error" in str(info.value)
    _assert_nothing_left(tmp_path)


def test_iostream_error_with_space_left_is_not_called_a_full_disk(make_checkpoint, tmp_path, monkeypatch):
    import openvino

    def failing_write(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(openvino, "save_model", failing_write)
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int8", ov_cache_dir=tmp_path,
                                             compile=False)
    assert "not enough disk space" not in str(info.value)
    assert "compressing" in str(info.value) and "iostream error" in str(info.value)
    _assert_nothing_left(tmp_path)


def test_too_little_space_is_refused_before_exporting(make_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr("ov_causal.convert.diskspace.free_bytes", lambda folder: 2**20)
    monkeypatch.setattr("optimum.exporters.openvino.main_export", pytest.fail)  # must not start
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(make_checkpoint("llama"), preset="int4_asym_g64", ov_cache_dir=tmp_path)
    _assert_disk_message(str(info.value), tmp_path / "entries")
    assert "1.0 MiB is free" in str(info.value)
    assert "TMPDIR" not in str(info.value)  # the cache is full (even though pytest keeps it under /tmp)
    _assert_nothing_left(tmp_path)


def test_export_folder_copy_on_a_full_disk(make_export, tmp_path, monkeypatch):
    """Compressing an uncompressed export folder copies it to a temporary folder first."""
    folder = make_export("llama", preset="fp32")
    monkeypatch.setattr("ov_causal.convert.loading.shutil.copy2", _enospc)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(folder, preset="int8", compile=False)
    assert str(tmp_path) in str(info.value) and "TMPDIR" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that lets this container mount), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_small_filesystem(make_checkpoint, small_filesystem, monkeypatch):
    root = small_filesystem / "cache"
    ckpt = make_checkpoint("llama")
    with pytest.raises(ExportError) as info:  # the estimate (about 2 MiB of fp32 weights and more) refuses at once
        AutoModelForCausalLM.from_pretrained(ckpt, preset="int8", ov_cache_dir=root, compile=False)
    _assert_disk_message(str(info.value), root / "entries")
    _assert_nothing_left(root)

    # without the check before writing (as when another process eats the space meanwhile), the real writes
    # fill the filesystem (OpenVINO then raises "basic_ios::clear: iostream error"): still the same clear error
    monkeypatch.setattr("ov_causal.convert.export.check_free_space", lambda folder, needed, name: None)
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(ckpt, preset="int8", ov_cache_dir=root, compile=False)
    _assert_disk_message(str(info.value), root / "entries")
    _assert_nothing_left(root)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    model = AutoModelForCausalLM.from_pretrained(ckpt, preset="int8", ov_cache_dir=root, compile=False)
    assert model.ov_cache_hit is False


# --- issue 19 row 9: the estimate, the advice, save_pretrained ------------------------------------------------


def test_estimate_is_proportional_with_a_small_floor():
    int8 = PRESETS["int8"].compression
    assert export_bytes(150_000, int8) < 3 * 2**20  # a 0.6 MB export asked for 33 MiB
    big = export_bytes(10**9, int8)
    assert 5e9 < big < 6e9  # fp32 IR and its int8 copy, plus a tenth


def test_advice_names_the_disk_that_is_full(tmp_path, monkeypatch):
    monkeypatch.setattr("ov_causal.convert.diskspace.free_bytes", lambda folder: 0)
    cache = tmp_path / "cache" / "entries"  # under the temporary folder, as with pytest
    cache.mkdir(parents=True)
    cached = str(disk_full_error(cache, 2**20, "m"))
    assert "OV_CAUSAL_CACHE_DIR=" in cached and "TMPDIR" not in cached
    workdir = Path(tempfile.mkdtemp(prefix="ov_causal-"))
    try:
        temporary = str(disk_full_error(workdir, 2**20, "m"))
    finally:
        workdir.rmdir()
    assert "set TMPDIR" in temporary
    own = str(disk_full_error(tmp_path / "mine", 2**20, "m", action="save"))
    assert own.startswith("not enough disk space to save 'm'") and "TMPDIR" not in own
    assert "choose a folder on a disk with room" in own and "intact" in own


def _saved_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("when", ["while writing", "before writing"])
def test_save_pretrained_on_a_full_disk(make_export, tmp_path, monkeypatch, when):
    model = AutoModelForCausalLM.from_pretrained(make_export("llama"), compile=False)
    target = tmp_path / "saved"
    model.save_pretrained(target)
    before = _saved_state(target)
    with monkeypatch.context() as patched:
        if when == "while writing":
            patched.setattr("ov_causal.model.saving.shutil.copy2", _enospc)
        else:
            patched.setattr("ov_causal.convert.diskspace.free_bytes", lambda folder: 2**20)
            patched.setattr("ov_causal.model.saving.staging_folder", pytest.fail)  # must not start
        with pytest.raises(ExportError) as info:
            model.save_pretrained(target)
    message = str(info.value)
    assert message.startswith("not enough disk space to save") and str(target) in message
    assert "needed" in message and "choose a folder on a disk with room" in message and "intact" in message
    assert ("No space left on device" in message) == (when == "while writing")
    assert _saved_state(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no partial folder beside it
