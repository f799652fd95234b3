"""Fault injection: the export cache, saves and adapters under corruption, kills, concurrency and bad files.

Each test reproduces one row of issue 14 on a tiny model and asserts the error type (ours) or the
recovery, and that nothing is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pytest

from ov_causal import (
    AutoModelForCausalLM,
    DamagedModelError,
    LoraError,
    ManifestError,
    ModelSourceError,
    OVCausalError,
)
from ov_causal.convert import cache as cache_module
from ov_causal.convert import integrity
from ov_causal.convert.cache import ENTRY_FILE, get_or_build, quick_hash, verify
from ov_causal.convert.cache_entries import list_entries, verify_cache
from ov_causal.convert.manifest import MANIFEST_FILE
from tests.test_lora import _make_adapter

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ["def parse(args):\n    return"]


def greedy(model) -> list[int]:
    inputs = model.tokenizer(PROMPT, return_tensors="pt")
    return model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)[0].tolist()


def _entry(root: Path) -> Path:
    """The int8 entry (beside it: the fp32 export it was derived from)."""
    (entry,) = [p for p in (root / "entries").iterdir() if not p.name.startswith(".") and _preset(p) == "int8"]
    return entry


def _preset(entry: Path) -> str | None:
    try:
        return json.loads((entry / "ov_causal.json").read_text())["preset"]
    except (OSError, ValueError, KeyError):
        return None


def _problem(root: Path, entry: Path) -> str | None:
    (found,) = [e for e in list_entries(root) if e.key == entry.name]
    return found.problem


@pytest.fixture(scope="module")
def cached(make_checkpoint, tmp_path_factory):
    """(cache root, greedy tokens of the intact int8 entry of the tiny llama)."""
    root = tmp_path_factory.mktemp("faults-cache")
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=root)
    return root, greedy(model)


def _load(make_checkpoint, root, **kwargs):
    return AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=root, **kwargs)


def _overwrite_keeping_mtime(path: Path, offset: int, data: bytes) -> None:
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


# --- row 1: a 1 MiB region overwritten outside the sampled MiBs -------------------------------------------


def test_overwritten_region_of_a_large_file_is_detected(tmp_path):
    size = 8 << 20

    def build(target: Path) -> None:
        target.mkdir()
        (target / "weights.bin").write_bytes(os.urandom(size))

    hit = get_or_build(tmp_path, "k" * 32, {}, build)
    weights = hit.folder / "weights.bin"
    sampled = quick_hash(weights)
    _overwrite_keeping_mtime(weights, 2 << 20, os.urandom(1 << 20))  # between the first and the middle MiB
    assert quick_hash(weights) == sampled, "the old sampled hash cannot see this overwrite"
    assert verify(hit.folder) == "weights.bin was altered (its content no longer matches the sha256 recorded " \
                                 "when it was written)"
    with pytest.warns(UserWarning, match="damaged .*weights.bin was altered.*rebuilding"):
        again = get_or_build(tmp_path, "k" * 32, {}, build)
    assert again.hit is False and verify(again.folder) is None


def test_corrupted_middle_of_cached_weights_is_rebuilt(make_checkpoint, cached, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    weights = _entry(root) / "openvino_model.bin"
    size = weights.stat().st_size
    _overwrite_keeping_mtime(weights, size // 3, os.urandom(4096))
    code, out = _cli("cache", "list", "--cache-dir", str(root))
    assert code == 0 and "DAMAGED: openvino_model.bin was altered" in out
    with pytest.warns(UserWarning, match="openvino_model.bin was altered.*rebuilding"):
        model = _load(make_checkpoint, root)
    assert model.ov_cache_hit is False and greedy(model) == cached[1]


def test_unchanged_entry_is_trusted_without_rehash_and_touched_one_is_rehashed(make_checkpoint, cached, tmp_path,
                                                                                monkeypatch):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    _load(make_checkpoint, root, compile=False)  # the copy's new ctimes: re-hashed once, then recorded
    entry = _entry(root)
    hashed = []
    original = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: hashed.append(p.name) or original(p))
    assert verify(entry) is None and hashed == []
    os.utime(entry / "openvino_model.bin")
    assert verify(entry) is None and hashed == ["openvino_model.bin"]
    assert verify(entry, full=True) is None and len(hashed) > 2


def test_cache_verify_rehashes_everything(cached, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    code, out = _cli("cache", "verify", "--cache-dir", str(root))
    assert code == 0 and "verified 2 entries" in out and " ok" in out  # int8 and the fp32 it was derived from
    entry = _entry(root)
    record = json.loads((entry / ENTRY_FILE).read_text())
    weights = entry / "openvino_model.bin"
    _overwrite_keeping_mtime(weights, 100, b"\xff" * 16)
    # the recorded times made to match (as after a refresh): only a full re-hash can tell
    st = weights.stat()
    record["files"]["openvino_model.bin"].update(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
    (entry / ENTRY_FILE).write_text(json.dumps(record))
    assert verify(entry) is None
    assert verify_cache(entry.name[:6], root) == {entry.name: verify(entry, full=True)}
    code, out = _cli("cache", "verify", entry.name[:8], "--cache-dir", str(root))
    assert code == 1 and "DAMAGED: openvino_model.bin was altered" in out


# --- row 2: concurrent loads share the compiled-model cache -----------------------------------------------

CONCURRENT = textwrap.dedent(
    """
    import sys
    from ov_causal import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], preset="int8", ov_cache_dir=sys.argv[2])
    inputs = model.tokenizer(["def parse(args):\\n    return"], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    print("TOKENS", model.last_engine, out[0].tolist(), flush=True)
    model(**inputs)  # the transformers loop compiles into CACHE_DIR (GenAI's engine on CPU caches no blob)
    """
)


def _blobs(entry: Path) -> list[str]:
    return sorted(p.name for p in (entry / "compiled").iterdir())


def _load_in(processes: int, checkpoint: Path, root: Path) -> set[str]:
    children = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(checkpoint), str(root)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                for _ in range(processes)]
    results = [child.communicate(timeout=600) for child in children]
    assert [c.returncode for c in children] == [0] * processes, [err[-2000:] for _, err in results]
    return {line for out, _ in results for line in out.splitlines() if line.startswith("TOKENS")}


def test_four_processes_loading_at_once_share_one_blob_set(make_checkpoint, cached, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    entry = _entry(root)
    shutil.rmtree(entry / "compiled", ignore_errors=True)  # GenAI alone writes none on CPU
    outputs = _load_in(1, make_checkpoint(), root)
    reference = _blobs(entry)  # what one process alone writes into CACHE_DIR
    assert reference, "the load compiled into CACHE_DIR"
    for fresh in (True, False):  # all four compile at once (one writes, three wait and read); all read
        if fresh:
            shutil.rmtree(entry / "compiled", ignore_errors=True)  # GenAI alone writes none on CPU
        outputs |= _load_in(4, make_checkpoint(), root)
        assert _blobs(entry) == reference
    assert outputs == {f"TOKENS genai {cached[1]}"}


def test_compilation_holds_the_entry_compile_lock(make_checkpoint, cached, monkeypatch):
    held = []
    original = cache_module.key_lock

    def recording(root, key):
        held.append(key)
        return original(root, key)

    monkeypatch.setattr(cache_module, "key_lock", recording)
    model = _load(make_checkpoint, cached[0])  # GenAI pipeline at load: no CACHE_DIR on CPU, no compile lock
    key = _entry(cached[0]).name
    assert held == [key] and "CACHE_DIR" not in model._genai_engine().properties
    lazy = _load(make_checkpoint, cached[0], compile=False, backend="optimum")
    greedy(lazy)  # optimum compiles on first use
    assert held[1] == key and set(held[2:]) == {f"{key}.compile"} and model is not None


def test_the_serving_engine_writes_no_blob_into_the_entry(make_checkpoint, cached, monkeypatch):
    """Two Ray replicas starting on one fresh entry raced OpenVINO's in-place blob write ("cannot set permissions");
    on CPU the engine now writes none (its paged-attention blob was never read back)."""
    from ov_causal.model.plan import plan_load
    from ov_causal.serving.scheduler import ServingCore

    held = []
    original = cache_module.key_lock

    def recording(root, key):
        held.append(key)
        return original(root, key)

    plan = plan_load(make_checkpoint(), preset="int8", ov_cache_dir=cached[0])
    monkeypatch.setattr(cache_module, "key_lock", recording)
    core = ServingCore(plan.folder, device=plan.device, properties=dict(plan.properties))
    try:  # on CPU its paged-attention blob would never be read back: no CACHE_DIR, nothing written, no lock
        assert held == [] and "CACHE_DIR" not in core._engine_args[3]
    finally:
        core.close()


# --- row 3: SIGKILL (or an error) at any rename of save_pretrained over an older save --------------------

SAVE = textwrap.dedent(
    """
    import os, sys
    from ov_causal import AutoModelForCausalLM, ExportError
    from ov_causal.convert import files
    source, target, n, how, exchange = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    model = AutoModelForCausalLM.from_pretrained(source, compile=False)
    calls = [0]

    def counted(function):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                if how == "exit":
                    os._exit(9)
                raise OSError(28, "injected failure")
            return function(*args, **kwargs)
        return wrapper

    os.rename, os.replace = counted(os.rename), counted(os.replace)
    files.exchange = counted(files.exchange if exchange == "yes" else (lambda a, b: False))
    try:
        model.save_pretrained(target)
    except (OSError, ExportError) as exc:  # the injected ENOSPC is a full disk: ExportError since issue 19 row 9
        print("RAISED", exc, flush=True)
        sys.exit(3)
    print("SAVED", calls[0], flush=True)
    """
)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _leftovers(target: Path) -> list[str]:
    return [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


@pytest.mark.parametrize("exchange", ["yes", "no"])
def test_killed_or_failed_save_leaves_the_old_or_the_new_save(make_export, tmp_path, exchange):
    old_src, new_src = make_export("llama"), make_export("llama", preset="int8")
    outputs = {}
    for name, src in (("old", old_src), ("new", new_src)):
        outputs[name] = greedy(AutoModelForCausalLM.from_pretrained(src))
    target = tmp_path / "save"
    seen = set()
    for n in range(1, 8):
        for how in ("exit", "raise"):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(old_src, target)
            (target / "notes.txt").write_text("mine")
            old = _snapshot(target)
            child = subprocess.run([sys.executable, "-c", SAVE, str(new_src), str(target), str(n), how, exchange],
                                   capture_output=True, text=True, timeout=600, cwd=ROOT)
            assert child.returncode in (0, 3, 9), child.stderr[-2000:]
            done = child.returncode == 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a restored backup warns
                loaded = AutoModelForCausalLM.from_pretrained(target)
            state = "old" if _snapshot(target) == old else "new"
            if state == "new":
                assert loaded.preset == "int8" and _snapshot(target)["notes.txt"] == b"mine"
                assert _snapshot(target)["openvino_model.bin"] == (new_src / "openvino_model.bin").read_bytes()
            assert greedy(loaded) == outputs[state], (n, how, state)
            seen.add(state)
            if done:
                break
            loaded.save_pretrained(target)  # the next save cleans what the killed one left
            assert _leftovers(target) == [] and (target / "notes.txt").read_text() == "mine"
        if done:
            break
    assert done and seen == {"old", "new"}


def test_load_restores_the_backup_of_a_save_killed_between_its_renames(make_export, tmp_path):
    target = tmp_path / "save"
    for n in range(1, 8):  # the first rename of the swap comes after those of the files the save writes
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(make_export("llama"), target)
        child = subprocess.run([sys.executable, "-c", SAVE, str(make_export("llama", preset="int8")), str(target),
                                str(n), "exit", "no"], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert child.returncode == 9, child.stderr[-2000:]
        if not target.exists():
            break
    assert not target.exists() and [p for p in _leftovers(target) if ".backup-" in p]
    with pytest.warns(UserWarning, match="interrupted; the previous save was restored"):
        model = AutoModelForCausalLM.from_pretrained(target, compile=False)
    assert model.preset != "int8" and target.is_dir()


# --- row 4 and 11: adapters ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter(make_checkpoint, tmp_path_factory):
    return _make_adapter(make_checkpoint, tmp_path_factory.mktemp("adapters") / "good", seed=5)


def _altered_adapter(adapter: Path, out: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    tensors = load_file(out / "adapter_model.safetensors")
    save_file(edit(tensors), out / "adapter_model.safetensors")
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_adapter_weights_are_refused(make_checkpoint, adapter, tmp_path, value):
    def poison(tensors):
        name = sorted(tensors)[0]
        tensors[name][0, 0] = value
        return tensors

    bad = _altered_adapter(adapter, tmp_path / "bad", poison)
    with pytest.raises(LoraError, match=r"adapter_model.safetensors holds NaN or infinite values in 1 tensor"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=bad, ov_cache_dir=tmp_path / "c")


def test_adapter_tensors_for_modules_the_base_lacks_are_refused(make_checkpoint, adapter, tmp_path):
    stray = _altered_adapter(adapter, tmp_path / "stray",
                             lambda t: {k.replace("q_proj", "qkv_proj"): v for k, v in t.items()})
    with pytest.raises(LoraError, match=r"safetensors has tensors for \d+ module\(s\) the base model .* lacks, "
                                        r"e.g. 'model.layers.0.self_attn.qkv_proj'"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=stray, ov_cache_dir=tmp_path / "c")


def test_unreadable_adapter_config_is_a_lora_error(make_checkpoint, adapter, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(adapter, bad)
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(LoraError, match=r"adapter_config.json cannot be read"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=bad, ov_cache_dir=tmp_path / "c")


def test_broken_pickle_adapter_is_a_lora_error(make_checkpoint, adapter, tmp_path):
    bad = tmp_path / "pickled"
    shutil.copytree(adapter, bad)
    (bad / "adapter_model.safetensors").unlink()
    (bad / "adapter_model.bin").write_bytes(b"\x80\x04garbage, not a pickle")
    with pytest.raises(LoraError, match=r"adapter_model.bin cannot be read \(UnpicklingError"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=bad, lora_allow_pickle=True,
                                             ov_cache_dir=tmp_path / "c")


def test_pickle_refusal_names_the_cli_flag_in_the_cli(make_checkpoint, adapter, tmp_path):
    from ov_causal import fuse_lora

    pickled = _make_adapter(make_checkpoint, tmp_path / "pickled", seed=6, safe=False)
    code, out = _cli("fuse-lora", str(make_checkpoint()), str(pickled), "--out", str(tmp_path / "out"))
    assert code == 2 and "pass --allow-pickle if you trust" in out and "allow_pickle=True" not in out
    with pytest.raises(LoraError, match=r"pass allow_pickle=True if you trust"):
        fuse_lora(make_checkpoint(), pickled, tmp_path / "out")
    with pytest.raises(LoraError, match=r"pass lora_allow_pickle=True if you trust"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=pickled, ov_cache_dir=tmp_path / "c")


# --- row 5: a file where an entry folder should be --------------------------------------------------------


def test_file_in_place_of_an_entry_is_removed_by_load_and_by_clear(make_checkpoint, cached, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    entry = _entry(root)
    shutil.rmtree(entry)
    entry.write_text("not a folder")
    assert _problem(root, entry) == "it is not a folder"
    code, out = _cli("cache", "clear", "--older-than", "30d", "--cache-dir", str(root))
    assert code == 0 and "removed 1 entry" in out and not entry.exists()
    entry.write_text("not a folder")
    with pytest.warns(UserWarning, match="it is not a folder.*rebuilding"):
        model = _load(make_checkpoint, root)
    assert entry.is_dir() and greedy(model) == cached[1]


# --- row 6: a read-only cache, as a non-root user ---------------------------------------------------------

AS_NOBODY = textwrap.dedent(
    """
    import os, sys, tempfile, warnings
    from ov_causal import AutoModelForCausalLM
    scratch = tempfile.mkdtemp()
    for preset in ("int8", "fp16"):  # as root first: imports what the loads need (the interpreter is root's)
        model = AutoModelForCausalLM.from_pretrained(sys.argv[1], preset=preset, ov_cache_dir=scratch)
        model.generate(**model.tokenizer(["x"], return_tensors="pt"), max_new_tokens=2)
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    for preset in ("int8", "fp16"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = AutoModelForCausalLM.from_pretrained(sys.argv[1], preset=preset, ov_cache_dir=sys.argv[2])
        inputs = model.tokenizer(["def parse(args):\\n    return"], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        notes = [str(w.message) for w in caught if "cache" in str(w.message)]
        print(preset, model.ov_cache_hit, out[0].tolist(), notes, flush=True)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to the user nobody")
def test_read_only_cache_is_used_read_only_or_bypassed(make_checkpoint, cached):
    shared = Path(tempfile.mkdtemp(prefix="ov_causal-ro-"))
    try:
        os.chmod(shared, 0o755)
        checkpoint, root = shared / "ckpt", shared / "cache"
        shutil.copytree(make_checkpoint(), checkpoint)
        shutil.copytree(cached[0], root)
        for path in shared.rglob("*"):  # readable by everyone, writable by root only
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        entry = _entry(root)
        used = (entry / "last_used").read_text()
        env = {**os.environ, "HOME": str(shared / "home"), "HF_HOME": str(shared / "home" / "hf")}
        child = subprocess.run([sys.executable, "-c", AS_NOBODY, str(checkpoint), str(root)], capture_output=True,
                               text=True, timeout=600, cwd=ROOT, env=env)
        assert child.returncode == 0, child.stderr[-3000:]
        int8, fp16 = child.stdout.strip().splitlines()
        assert int8 == f"int8 True {cached[1]} []"  # a verified hit, nothing written
        assert fp16.startswith("fp16 None [") and "cannot be written" in fp16 and "temporary folder" in fp16
        assert (entry / "last_used").read_text() == used and len(list_entries(root)) == 2  # int8 and its fp32
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_entry_that_cannot_record_its_use_still_loads(make_checkpoint, cached, monkeypatch):
    original = Path.write_text

    def refuse(self, *args, **kwargs):
        if self.name == "last_used":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    assert _load(make_checkpoint, cached[0], compile=False).ov_cache_hit is True


# --- row 7: manifests from a newer version, garbage, missing keys ------------------------------------------


@pytest.fixture
def export_copy(make_export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(make_export("llama"), folder)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST_FILE
    path.write_text(edit(json.loads(path.read_text())) if callable(edit) else edit)


def test_manifest_from_a_newer_version_loads_with_a_warning(export_copy):
    _edit_manifest(export_copy, lambda d: json.dumps({**d, "format": 2, "shards": 4,
                                                      "compression": {**d["compression"], "codebook": "x"}}))
    with pytest.warns(UserWarning) as caught:
        model = AutoModelForCausalLM.from_pretrained(export_copy, compile=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "ov_causal.json has keys this version of ov_causal does not know (shards)" in messages
    assert "(compression.codebook)" in messages and model.ov_manifest.preset


@pytest.mark.parametrize("content, problem", [
    ("{garbage", "it is not valid JSON"),
    ("[1, 2]", "it holds a JSON list, not an object"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "compression"}), "it lacks compression"),
    (lambda d: json.dumps({**d, "compression": {"weights": "int3"}}), "the manifest|compression holds an invalid"),
])
def test_garbage_manifest_is_a_manifest_error(export_copy, content, problem):
    _edit_manifest(export_copy, content)
    with pytest.raises(ManifestError, match=rf"{MANIFEST_FILE} cannot be read: ({problem}).*delete it"):
        AutoModelForCausalLM.from_pretrained(export_copy, compile=False)


def test_cli_reports_a_garbage_manifest_without_a_traceback(export_copy):
    _edit_manifest(export_copy, "{garbage")
    code, out = _cli("generate", "x", "--model", str(export_copy), "--max-new-tokens", "2")
    assert code == 2 and "ov-causal: error:" in out and "ov_causal.json" in out and "Traceback" not in out


# --- row 8: empty or overwritten IR files ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["openvino_model.xml", "openvino_model.bin"])
def test_empty_ir_file_in_an_export_is_a_damaged_model_error(export_copy, name):
    (export_copy / name).write_bytes(b"")
    with pytest.raises(DamagedModelError, match=rf"{name} is empty \(0 bytes\).*again"):
        AutoModelForCausalLM.from_pretrained(export_copy, compile=False)


@pytest.mark.parametrize("name", ["openvino_tokenizer.xml", "openvino_detokenizer.bin"])
def test_empty_tokenizer_file_is_named(export_copy, name):
    """Issue 19 row 8: a 0-byte openvino_tokenizer.xml gave an OptionError blaming ov_config and the device."""
    from ov_causal.model.ready import find_ready

    (export_copy / name).write_bytes(b"")
    pattern = rf"{export_copy / name} is empty \(0 bytes\).*OpenVINO tokenizer.*Delete"
    with pytest.raises(DamagedModelError, match=pattern):
        AutoModelForCausalLM.from_pretrained(export_copy)
    with pytest.raises(DamagedModelError, match=pattern):
        find_ready(export_copy)


def test_unreadable_ir_is_a_damaged_model_error(export_copy):
    (export_copy / "openvino_model.xml").write_text("<net><garbage")
    with pytest.raises(DamagedModelError, match=r"OpenVINO cannot read the model in .*export.*again"):
        AutoModelForCausalLM.from_pretrained(export_copy, compile=False)


@pytest.mark.parametrize("fault", ["empty xml", "empty bin", "random bin"])
def test_damaged_ir_in_the_cache_is_listed_and_rebuilt(make_checkpoint, cached, tmp_path, fault):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    entry = _entry(root)
    path = entry / ("openvino_model.xml" if "xml" in fault else "openvino_model.bin")
    path.write_bytes(os.urandom(path.stat().st_size) if fault == "random bin" else b"")
    assert _problem(root, entry) is not None
    with pytest.warns(UserWarning, match=f"damaged .*{path.name}"):
        model = _load(make_checkpoint, root)
    assert greedy(model) == cached[1] and _problem(root, entry) is None


# --- row 9: `locks` a file, a lock file a folder --------------------------------------------------------


def test_locks_file_and_lock_folder_are_replaced(make_checkpoint, cached, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cached[0], root)
    shutil.rmtree(root / "locks")
    (root / "locks").write_text("")
    with pytest.warns(UserWarning, match="locks is a file where ov_causal keeps a folder"):
        assert _load(make_checkpoint, root, compile=False).ov_cache_hit is True
    lock = root / "locks" / f"{_entry(root).name}.lock"
    lock.unlink()
    lock.mkdir()
    with pytest.warns(UserWarning, match=r"\.lock is a folder where ov_causal keeps a lock file"):
        assert _load(make_checkpoint, root, compile=False).ov_cache_hit is True
    assert lock.is_file()


# --- row 10: config.json a symlink to itself -------------------------------------------------------------


def test_config_symlink_loop_is_named(make_checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(make_checkpoint(), folder)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(folder / "config.json")
    with pytest.raises(ModelSourceError, match=r"config.json is a symlink loop. Replace it with the file"):
        AutoModelForCausalLM.from_pretrained(folder)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(folder / "gone.json")
    with pytest.raises(ModelSourceError, match=r"config.json is a symlink to .*gone.json', which is missing"):
        AutoModelForCausalLM.from_pretrained(folder)


def _cli(*args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "ov_causal", *args], capture_output=True, text=True, timeout=600,
                            cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def test_every_new_error_is_in_the_hierarchy():
    from ov_causal import CacheError
    from ov_causal.convert.lora import LoraError as FromLora

    assert FromLora is LoraError
    for kind, builtin in ((LoraError, ValueError), (ManifestError, ValueError), (DamagedModelError, RuntimeError),
                          (CacheError, OSError)):
        assert issubclass(kind, OVCausalError) and issubclass(kind, builtin)
