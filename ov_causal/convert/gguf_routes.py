"""GGUF in: a llama.cpp file becomes an export-cache entry, keyed on the file's bytes (a copy under another name is
the same entry, an edited file another one), by one of two routes.

- kept (no ``preset=``): OpenVINO GenAI's GGUF reader builds the IR with the file's own quantized weights (Q4_0,
  Q4_1, Q8_0, ...), so generation runs on exactly llama.cpp's weights;
- dequantized (``preset=``, or ``torch_dtype=``): transformers reads the file into float32 weights, and the
  normal export applies the preset (int8, int4_*, fp16, ...).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config.presets import PRESETS, Compression
from ..errors import UnsupportedModelError
from .cache import cache_root, get_or_build, make_key
from .diskspace import disk_full_errors, export_bytes, with_margin
from .export import publish, read_ir, staging_folder
from .gguf import GGUFInfo, check_dequantizable, content_hash, convert_kept, dequantize, read_info
from .ir import dominant_format, int4_layout, is_stateful
from .loading import ExportRequest, Prepared, cache_key, checkpoint_build
from .manifest import Manifest
from .sources import Source, check_exportable, read_config

KEPT, DEQUANTIZED = "kept", "dequantized"
_FORMAT = 1  # bump when a route's output changes, so that older entries are not reused


def route(request: ExportRequest) -> str:
    """Which route a request takes: a compression asked for (preset=, torch_dtype=) dequantizes."""
    return KEPT if request.compression is None else DEQUANTIZED


def _stand_in(source: Source, digest: str) -> Source:
    """The checkpoint the dequantized route exports, as the export cache names it: by the file's hash."""
    return Source("checkpoint", source.path, source.name, content=digest)


def gguf_key(source: Source, request: ExportRequest) -> tuple[str, dict[str, Any]]:
    """The export cache key of a GGUF file's export by the route ``request`` takes, and the parts it hashes."""
    digest = content_hash(source.path)
    if route(request) == DEQUANTIZED:
        return cache_key(_stand_in(source, digest), request)
    versions = {name: metadata.version(name) for name in ("openvino", "openvino-genai", "transformers")}
    parts = {"format": _FORMAT, "source": {"gguf": digest}, "route": KEPT, "versions": versions}
    return make_key(parts), parts


def describe_route(gguf: dict[str, str], preset: str) -> str:
    """'GGUF Q4_1, kept as is via GenAI' or 'GGUF Q4_1 dequantized, int8'."""
    if gguf.get("route") == KEPT:
        return f"GGUF {gguf.get('type', '?')}, kept as is via GenAI"
    return f"GGUF {gguf.get('type', '?')} dequantized, {preset}"


def _record(source: Source, info: GGUFInfo, kind: str) -> dict[str, str]:
    return {"file": source.path.name, "sha256": content_hash(source.path), "type": info.file_type, "route": kind}


def _kept_manifest(source: Source, info: GGUFInfo, folder: Path) -> Manifest:
    """The manifest of GenAI's IR, its weight layout read from the IR (Q4_1: int4 asym, groups of 32)."""
    ir = read_ir(folder)
    stored = dominant_format(ir)
    if stored == "int4":
        sym, group_size = int4_layout(ir)
        compression = Compression("int4", sym=sym, group_size=group_size)
    else:
        compression = PRESETS[stored].compression
    return Manifest(source.name, f"gguf:{info.file_type}", compression, is_stateful(ir),
                    gguf=_record(source, info, KEPT))


def _kept_build(source: Source, info: GGUFInfo) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        with staging_folder(target) as tmp:
            convert_kept(source.path, info, tmp)
            _kept_manifest(source, info, tmp).write(tmp)
            publish(tmp, target)

    return build


def _dequantized_build(source: Source, info: GGUFInfo, request: ExportRequest, root: Path) -> Callable[[Path], None]:
    """Dequantize into a temporary checkpoint, export it with the preset (the fp32 export it derives from is cached
    under the file's hash too), and record the GGUF in the manifest."""

    def build(target: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="ov_causal-gguf-") as tmp:
            checkpoint = Path(tmp) / "checkpoint"
            dequantize(source.path, checkpoint)
            check_exportable(read_config(checkpoint), checkpoint)
            dequantized = Source("checkpoint", checkpoint, source.name, content=content_hash(source.path))
            checkpoint_build(dequantized, request, root)(target)
        manifest = Manifest.read(target)
        if manifest is not None:
            replace(manifest, gguf=_record(source, info, DEQUANTIZED)).write(target)

    return build


def _check(source: Source, info: GGUFInfo, request: ExportRequest) -> None:
    """Refuse what the route cannot do, before any work, saying what to do instead."""
    if route(request) == DEQUANTIZED:
        check_dequantizable(info, source.path)
        return
    why = info.unsupported_by_genai()
    if why:
        raise UnsupportedModelError(
            f"{str(source.path)!r} (GGUF {info.file_type}) cannot be kept as it is: {why}. Pass preset= (e.g. "
            "preset='int8' or 'int4_asym_g64') to dequantize it with transformers and export it with that preset."
        )
    if request.adapters:
        raise UnsupportedModelError(
            "lora= with a GGUF file needs its dequantized route: pass preset= too (e.g. preset='int8'), so that the "
            "adapter is fused into the dequantized weights before export."
        )
    if request.stateful is False:
        raise UnsupportedModelError(
            "stateful=False: OpenVINO GenAI builds a GGUF file's model in the stateful form only. Leave stateful "
            "unset, or pass preset= to dequantize the file and export it stateless."
        )


def _needed(info: GGUFInfo, request: ExportRequest) -> int:
    if request.compression is None:  # GenAI's IR is about the size of the file
        return with_margin(info.parameters * 1.0)
    return with_margin(info.parameters * 4.0) + export_bytes(info.parameters, request.compression)


def prepare_gguf(source: Source, request: ExportRequest) -> Prepared:
    """The export folder of a GGUF file by the route ``request`` takes, from the export cache or built into it."""
    info = read_info(source.path)
    _check(source, info, request)
    kind = route(request)
    root = cache_root(request.ov_cache_dir)
    build = _kept_build(source, info) if kind == KEPT else _dequantized_build(source, info, request, root)
    if not request.cache:
        workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
        target = Path(workdir.name) / "model"
        build(target)
        return Prepared(target, Manifest.read(target), workdir)
    key, parts = gguf_key(source, request)
    with disk_full_errors(root, _needed(info, request), source.name):
        hit = get_or_build(root, key, parts, build)
    stored = Manifest.read(hit.folder)
    # The entry may have been built from a copy of the file under another name: describe it as this request names it.
    manifest = None if stored is None else replace(stored, source=source.name, gguf=_record(source, info, kind))
    if hit.workdir is not None:  # the cache could not be written: a temporary export, not cached
        return Prepared(hit.folder, manifest, hit.workdir)
    return Prepared(hit.folder, manifest, cache=hit)
