"""How ``from_pretrained`` gets a folder to load: export a checkpoint, or check (and compress) an export."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .errors import UnsupportedModelError
from .export import compress_folder, export_checkpoint, publish, read_ir, staging_folder
from .hfcompat import HubOptions
from .ir import dominant_format, int4_layout, is_stateful
from .manifest import MANIFEST_FILE, Manifest
from .presets import PRESETS, Compression, default_compression
from .sources import Source, check_exportable, count_parameters, read_config


def _export_to_workdir(
    source: Source, name: str | None, compression: Compression | None, stateful: bool, hub: HubOptions
) -> tuple[tempfile.TemporaryDirectory, Path]:
    config = read_config(source.path)
    check_exportable(config, source.path)
    if compression is None:
        name, compression = default_compression(count_parameters(source.path))
    workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
    target = Path(workdir.name) / "model"
    stateful = stateful and hub.use_cache
    manifest = Manifest(source=source.name, preset=name or "custom", compression=compression, stateful=stateful)
    export_checkpoint(source, target, compression, stateful, hub, finish=manifest.write)
    return workdir, target


def stateful_error(folder: Path, stateful: bool) -> UnsupportedModelError:
    form = "stateless" if stateful else "stateful"
    return UnsupportedModelError(
        f"stateful={stateful} was asked for, but {str(folder)!r} was exported {form}, and an export cannot be "
        f"converted. Load it with stateful={not stateful} (or leave stateful unset), or export the original "
        f"checkpoint again with stateful={stateful}."
    )


def _check_ir_matches(folder: Path, compression: Compression, stateful: bool | None) -> tuple[str, bool]:
    """Refuse a preset the stored weights cannot become; return (stored format, stateful)."""
    ir = read_ir(folder)
    if stateful is not None and stateful != is_stateful(ir):
        raise stateful_error(folder, stateful)
    stored = dominant_format(ir)
    if stored != compression.weights and not (stored in ("fp32", "fp16") and compression.quantized):
        raise UnsupportedModelError(
            f"{str(folder)!r} already stores {stored} weights and cannot be turned into {compression.describe()}. "
            "Export the original checkpoint with this preset, or load the folder without preset=."
        )
    return stored, is_stateful(ir)


def _compressed_copy(folder: Path, compression: Compression) -> tuple[tempfile.TemporaryDirectory, Path]:
    """Compress an uncompressed export into a temporary folder (the original stays as it is)."""
    workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
    target = Path(workdir.name) / "model"
    with staging_folder(target) as tmp:
        for item in folder.iterdir():
            if item.is_file() and item.name != MANIFEST_FILE:
                shutil.copy2(item, tmp / item.name)
        compress_folder(tmp, compression)
        publish(tmp, target)
    return workdir, target


def prepare_folder(
    source: Source, name: str | None, compression: Compression | None, stateful: bool | None, hub: HubOptions
) -> tuple[tempfile.TemporaryDirectory | None, Path, Manifest | None]:
    """The folder optimum will load: an export of a checkpoint, an export folder, or its compressed copy."""
    if source.kind == "checkpoint":
        workdir, folder = _export_to_workdir(source, name, compression, stateful is not False, hub)
        return workdir, folder, Manifest.read(folder)
    manifest = Manifest.read(source.path)
    if compression is None:
        return None, source.path, manifest
    stored, ir_stateful = _check_ir_matches(source.path, compression, stateful)
    if compression.quantized and stored in ("fp32", "fp16"):
        workdir, folder = _compressed_copy(source.path, compression)
        return workdir, folder, Manifest(source.name, name or "custom", compression, ir_stateful)
    return None, source.path, manifest


def manifest_for_ir(model: Any, source: str) -> Manifest:
    """Describe an export made by other tools (optimum-cli, ...) from its weights."""
    stored = dominant_format(model.model)
    if stored == "int4":
        sym, group_size = int4_layout(model.model)
        compression = Compression("int4", sym=sym, group_size=group_size)
        name = f"int4_{'sym' if sym else 'asym'}_g{group_size}"
    else:
        name, compression = stored, PRESETS[stored].compression
    return Manifest(source=source, preset=name, compression=compression, stateful=is_stateful(model.model))


def find_tokenizer(folder: Path, hub: HubOptions) -> Any:
    from transformers import AutoTokenizer

    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=hub.trust_remote_code)
    except Exception as exc:  # a broken tokenizer must not stop the model from loading
        warnings.warn(f"the tokenizer in {folder} could not be loaded ({exc}); pass your own.", stacklevel=3)
        return None
