"""How ``from_pretrained`` gets a folder to load: export a checkpoint, or check (and compress) an export."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..config.hub import HubOptions
from ..config.options import validate_ov_config
from ..config.presets import PRESETS, Compression, Runtime, default_compression, default_runtime
from ..errors import DamagedModelError, UnsupportedModelError, warn
from .cache import Hit, cache_root, folder_fingerprint, get_or_build, held_entry, make_key
from .diskspace import check_free_space, compress_bytes, derived_bytes, disk_full_errors, export_bytes
from .export import (
    IR_FILES,
    TOKENIZER_FILES,
    compress_folder,
    derive_export,
    export_checkpoint,
    model_fallback,
    publish,
    read_ir,
    staging_folder,
)
from .ir import dominant_format, int4_layout, is_stateful
from .lora import Adapter, check_adapter, fused_checkpoint
from .manifest import MANIFEST_FILE, Manifest, library_versions
from .sources import Source, check_exportable, count_parameters, read_config


@dataclass(frozen=True)
class ExportRequest:
    """What the user asked for that changes the exported files."""

    name: str | None
    compression: Compression | None
    stateful: bool | None
    hub: HubOptions
    adapters: tuple[Adapter, ...] = ()
    lora_allow_pickle: bool = False
    cache: bool = True
    ov_cache_dir: str | None = None
    calibration: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """The folder to load, its manifest, and where it came from."""

    folder: Path
    manifest: Manifest | None
    workdir: tempfile.TemporaryDirectory | None = None
    cache: Hit | None = None


def _key_fields(compression: Compression) -> dict[str, Any]:
    """The compression's fields for the cache key; ``all_layers`` only when set, so exports made before the
    field existed keep their keys."""
    fields = asdict(compression)
    if not fields.get("all_layers"):
        fields.pop("all_layers", None)
    return fields


def _cache_parts(source: Source, compression: Compression, stateful: bool, request: ExportRequest) -> dict[str, Any]:
    """Everything that changes an export's files, for the cache key."""
    if source.content:  # made from a file whose hash stands for it (a GGUF's dequantized checkpoint)
        identity = {"content": source.content}
    elif source.commit:
        identity = {"hub": source.name, "commit": source.commit}
    else:
        identity = {"local": folder_fingerprint(source.path)}
    versions = library_versions()
    return {
        "format": 1,
        "source": identity,
        "compression": _key_fields(compression),
        "stateful": stateful,
        "use_cache": request.hub.use_cache,
        "adapters": [(folder_fingerprint(a.path), a.weight) for a in request.adapters],
        "calibration": hashlib.sha256("\0".join(request.calibration).encode()).hexdigest()
        if compression.data_aware else None,
        "versions": {k: versions[k] for k in ("openvino", "optimum-intel", "nncf", "transformers")},
    }


def export_settings(source: Source, request: ExportRequest) -> tuple[str | None, Compression, bool]:
    """The preset name, compression and stateful form an export of a checkpoint gets (the size default
    applied). Reads only safetensors headers: no torch, transformers or optimum import."""
    name, compression = request.name, request.compression
    if compression is None:
        name, compression = default_compression(count_parameters(source.path))
    return name, compression, request.stateful is not False and request.hub.use_cache


def cache_key(source: Source, request: ExportRequest) -> tuple[str, dict[str, Any]]:
    """The export cache key of a checkpoint export, and the parts it hashes."""
    _, compression, stateful = export_settings(source, request)
    parts = _cache_parts(source, compression, stateful, request)
    return make_key(parts), parts


def _manifest(source: Source, request: ExportRequest) -> Manifest:
    name, compression, stateful = export_settings(source, request)
    adapters = [{"path": str(a.path), "weight": a.weight} for a in request.adapters]
    return Manifest(source.name, name or "custom", compression, stateful, adapters=adapters)


def _finisher(manifest: Manifest) -> Callable[[Path, dict[str, str]], None]:
    """Write ``manifest``, with the group-size fallback the compression reported, into the staging folder."""

    def finish(folder: Path, fallback: dict[str, str]) -> None:
        replace(manifest, fallback=fallback).write(folder)

    return finish


def _torch_export(source: Source, request: ExportRequest) -> Callable[[Path], None]:
    """The build of an export from torch: the checkpoint (LoRA adapters fused first) exported and compressed."""
    _, compression, stateful = export_settings(source, request)
    finish = _finisher(_manifest(source, request))

    def build(target: Path) -> None:
        if not request.adapters:
            export_checkpoint(source, target, compression, stateful, request.hub, finish, request.calibration)
            return
        options = dict(allow_pickle=request.lora_allow_pickle, trust_remote_code=request.hub.trust_remote_code)
        with fused_checkpoint(source.path, list(request.adapters), **options) as fused:
            fused_source = Source(source.kind, fused, source.name)
            export_checkpoint(fused_source, target, compression, stateful, request.hub, finish, request.calibration)

    return build


def derives(source: Source, compression: Compression, adapters: tuple[Adapter, ...] = ()) -> bool:
    """Whether a cached export with ``compression`` is derived from the checkpoint's cached fp32 export.

    int8/int4 always: today's export compresses that very IR. fp16 when the checkpoint (or the fused one a LoRA
    makes, saved in float32) stores float32 weights: optimum's fp16 export is then the same trace saved with fp16
    weights. A 16-bit checkpoint is traced in 16 bits for fp16 (another graph), so it is exported from torch.
    """
    if compression.quantized:
        return True
    if compression.weights != "fp16":
        return False
    config = read_config(source.path)
    return bool(adapters) or config.get("dtype", config.get("torch_dtype")) in (None, "float32")


def _derived(source: Source, request: ExportRequest, root: Path) -> Callable[[Path], None]:
    """The build of a preset derived from the checkpoint's fp32 export, which is cached first if it is not yet."""
    _, compression, _ = export_settings(source, request)
    base_request = replace(request, name="fp32", compression=PRESETS["fp32"].compression, calibration=())
    base_key, base_parts = cache_key(source, base_request)
    finish = _finisher(_manifest(source, request))

    def build(target: Path) -> None:
        cached = (target.parent / base_key).is_dir()
        check_free_space(target.parent, derived_bytes(count_parameters(source.path), compression, cached), source.name)
        with held_entry(root, base_key, base_parts, _torch_export(source, base_request)) as base:
            derive_export(base.folder, target, compression, source.name, finish, request.calibration)

    return build


def checkpoint_build(source: Source, request: ExportRequest, root: Path) -> Callable[[Path], None]:
    """The build of the cache entry ``cache_key(source, request)`` names: derived from the cached fp32 export, or
    exported from torch (see ``derives``)."""
    _, compression, _ = export_settings(source, request)
    derived = derives(source, compression, request.adapters)
    return _derived(source, request, root) if derived else _torch_export(source, request)


def _export(source: Source, request: ExportRequest) -> Prepared:
    check_exportable(read_config(source.path), source.path)
    for adapter in request.adapters:
        check_adapter(adapter, request.lora_allow_pickle)
    _, compression, _ = export_settings(source, request)
    manifest = _manifest(source, request)
    if not request.cache:
        workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
        target = Path(workdir.name) / "model"
        _torch_export(source, request)(target)
        return Prepared(target, _with_fallback(manifest, target), workdir)
    key, parts = cache_key(source, request)
    root = cache_root(request.ov_cache_dir)
    derived = derives(source, compression, request.adapters)
    build = checkpoint_build(source, request, root)
    parameters = count_parameters(source.path)
    needed = derived_bytes(parameters, compression, False) if derived else export_bytes(parameters, compression)
    with disk_full_errors(root, needed, source.name):
        hit = get_or_build(root, key, parts, build)
    # The entry may have been built for another name of the same files (a copy of the folder, a preset
    # object equal to a named one): describe it as this request names it.
    if hit.workdir is not None:  # the cache could not be written: a temporary export, not cached
        return Prepared(hit.folder, _with_fallback(manifest, hit.folder), hit.workdir)
    return Prepared(hit.folder, _with_fallback(manifest, hit.folder), cache=hit)


def _with_fallback(manifest: Manifest, folder: Path) -> Manifest:
    """``manifest`` with the group-size fallback recorded by the export in ``folder``."""
    stored = Manifest.read(folder)
    return replace(manifest, fallback=stored.fallback) if stored is not None else manifest


def stored_weights(prepared: Prepared) -> str:
    """The weight format of the folder to load: from its manifest, else read from the IR."""
    if prepared.manifest is not None:
        return prepared.manifest.compression.weights
    return dominant_format(read_ir(prepared.folder))


def runtime_config(
    runtime: Runtime | None, overrides: dict[str, str], prepared: Prepared, source_kind: str, device: str,
    user_ov_config: bool,
) -> tuple[Runtime, dict[str, str]]:
    """The runtime preset and the full ``ov_config`` (the user's keys win key by key).

    An export folder restores the runtime it was saved with unless a runtime or ov_config is given;
    a cached export compiles into its entry's ``compiled/`` folder (later loads skip compilation).
    """
    manifest = prepared.manifest
    if manifest is not None and source_kind == "openvino" and runtime is None and not user_ov_config:
        runtime, overrides = manifest.runtime, {**manifest.ov_config, **overrides}
    runtime = runtime or default_runtime(stored_weights(prepared), overrides)
    full_config = validate_ov_config({**runtime.ov_config(), **overrides}, device)
    if prepared.cache is not None:
        full_config.setdefault("CACHE_DIR", str(prepared.cache.compiled_dir))
    return runtime, full_config


def stateful_error(folder: Path, stateful: bool) -> UnsupportedModelError:
    form = "stateless" if stateful else "stateful"
    return UnsupportedModelError(
        f"stateful={stateful} was asked for, but {str(folder)!r} was exported {form}, and an export cannot be "
        f"converted. Load it with stateful={not stateful} (or leave stateful unset), or export the original "
        f"checkpoint again with stateful={stateful}."
    )


def damaged_ir(folder: Path, exc: Exception) -> DamagedModelError:
    """The error for an export folder whose IR OpenVINO cannot read."""
    detail = str(exc).strip().splitlines()
    return DamagedModelError(
        f"OpenVINO cannot read the model in {str(folder)!r} ({IR_FILES[0]} / {IR_FILES[1]}): "
        f"{detail[-1][:300] if detail else type(exc).__name__}. The files are damaged or incomplete: export or save "
        "the model again (or restore the folder from a backup)."
    )


def check_ir_files(folder: Path) -> None:
    """Refuse an export folder whose IR or OpenVINO tokenizer files are empty (a save or copy that stopped before
    writing them): the error names the file, not the device or ov_config OpenVINO would blame when compiling."""
    for name in IR_FILES:
        if _empty(folder / name):
            raise DamagedModelError(
                f"{folder / name} is empty (0 bytes): the export is incomplete or damaged. Export or save the model "
                "again."
            )
    for name in TOKENIZER_FILES:
        if _empty(folder / name):
            raise DamagedModelError(
                f"{folder / name} is empty (0 bytes): the OpenVINO tokenizer of this export is damaged. Delete "
                f"{', '.join(TOKENIZER_FILES)} from the folder (they are converted again from the Hugging Face "
                "tokenizer when the model loads), or save the model again."
            )


def _empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == 0


def _read_ir_checked(folder: Path) -> Any:
    try:
        return read_ir(folder)
    except RuntimeError as exc:
        raise damaged_ir(folder, exc) from exc


def _check_ir_matches(folder: Path, compression: Compression, stateful: bool | None) -> tuple[str, bool]:
    """Refuse a preset the stored weights cannot become; return (stored format, stateful)."""
    ir = _read_ir_checked(folder)
    if stateful is not None and stateful != is_stateful(ir):
        raise stateful_error(folder, stateful)
    stored = dominant_format(ir)
    if stored != compression.weights and not (stored in ("fp32", "fp16") and compression.quantized):
        raise UnsupportedModelError(
            f"{str(folder)!r} already stores {stored} weights and cannot be turned into {compression.describe()}. "
            "Export the original checkpoint with this preset, or load the folder without preset=."
        )
    return stored, is_stateful(ir)


def _compressed_copy(
    folder: Path, compression: Compression, calibration: tuple[str, ...]
) -> tuple[tempfile.TemporaryDirectory, Path, dict[str, str]]:
    """Compress an uncompressed export into a temporary folder (the original stays as it is)."""
    workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
    target = Path(workdir.name) / "model"
    needed = compress_bytes(folder, compression)
    try:
        check_free_space(target.parent, needed, str(folder))
        with staging_folder(target) as tmp, disk_full_errors(target.parent, needed, str(folder)):
            for item in folder.iterdir():
                if item.is_file() and item.name != MANIFEST_FILE:
                    shutil.copy2(item, tmp / item.name)
            fallback = compress_folder(tmp, compression, calibration)
            publish(tmp, target)
    except BaseException:
        workdir.cleanup()
        raise
    return workdir, target, fallback


def prepare_folder(source: Source, request: ExportRequest) -> Prepared:
    """The folder optimum will load: an export of a checkpoint (cached), an export folder, or its compressed copy."""
    if source.kind == "checkpoint":
        return _export(source, request)
    if request.adapters:
        raise UnsupportedModelError(
            f"lora= needs the Hugging Face checkpoint, but {source.name!r} is an OpenVINO export. "
            "Pass the base checkpoint together with lora=, or fuse first with ov_causal.fuse_lora."
        )
    check_ir_files(source.path)
    manifest = Manifest.read(source.path)
    if request.compression is None:
        return Prepared(source.path, manifest)
    stored, ir_stateful = _check_ir_matches(source.path, request.compression, request.stateful)
    if request.compression.quantized and stored in ("fp32", "fp16"):
        workdir, folder, fallback = _compressed_copy(source.path, request.compression, request.calibration)
        manifest = Manifest(source.name, request.name or "custom", request.compression, ir_stateful, fallback=fallback)
        return Prepared(folder, manifest, workdir)
    return Prepared(source.path, manifest)


def manifest_for_ir(model: Any, source: str) -> Manifest:
    """Describe an export made by other tools (optimum-cli, ...) from its weights."""
    stored = dominant_format(model.model)
    if stored == "int4":
        sym, group_size = int4_layout(model.model)
        compression = Compression("int4", sym=sym, group_size=group_size)
        name = f"int4_{'sym' if sym else 'asym'}_g{group_size}"
    else:
        name, compression = stored, PRESETS[stored].compression
    return Manifest(source=source, preset=name, compression=compression, stateful=is_stateful(model.model),
                    fallback=model_fallback(model.model, compression))


def find_tokenizer(folder: Path, hub: HubOptions) -> Any:
    from transformers import AutoTokenizer

    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=hub.trust_remote_code)
    except Exception as exc:  # a broken tokenizer must not stop the model from loading
        warn(f"the tokenizer in {folder} could not be loaded ({exc}); pass your own.")
        return None
