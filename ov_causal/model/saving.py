"""``save_pretrained``: an export folder written whole (IR, configs, tokenizers, manifest), then moved into place."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..convert.diskspace import check_free_space, disk_full_errors, folder_bytes, with_margin
from ..convert.export import IR_FILES, TOKENIZER_FILES, convert_tokenizer, publish, staging_folder
from ..convert.loading import manifest_for_ir
from ..convert.manifest import Manifest
from ..errors import ExportError


def save_folder(model: Any, target: Path, manifest: Manifest, unchanged: bool,
                serialize: Callable[[Path], None]) -> None:
    """Write IR, config, generation config, HF and OpenVINO tokenizers and ``manifest`` into ``target``.

    The folder is built beside ``target`` and moved into place when complete. An IR unchanged since
    loading (``unchanged``: same object, same number of ops) is copied byte for byte: optimum would
    re-serialize it with the in-memory KV-cache precision of a stateless model baked in. A ``model.model``
    replaced since loading (e.g. by ``nncf.compress_weights``) is written by ``serialize``, and the
    manifest then describes its weights as they are.

    A full disk (checked before writing, or met while writing) raises an ``ExportError`` saying how much
    room is needed; the folder keeps what it held before.
    """
    if target.exists() and not target.is_dir():
        raise ExportError(f"cannot save into {str(target)!r}: it is a file. Pass a folder path.")
    needed = with_margin(folder_bytes(Path(model.model_save_dir)))
    check_free_space(target, needed, manifest.source, action="save")
    with staging_folder(target) as tmp, disk_full_errors(target, needed, manifest.source, action="save"):
        if unchanged:
            for name in IR_FILES:
                shutil.copy2(Path(model.model_save_dir) / name, tmp / name)
            model.config.save_pretrained(tmp)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(tmp)
        else:  # the user replaced model.model (e.g. nncf.compress_weights): serialize it
            serialize(tmp)
            described = manifest_for_ir(model, manifest.source)
            manifest = replace(manifest, preset=described.preset, compression=described.compression)
        save_tokenizers(model.tokenizer, Path(model.model_save_dir), tmp)
        manifest.write(tmp)
        publish(tmp, target)


def save_tokenizers(tokenizer: Any, source: Path, folder: Path) -> None:
    """The HF tokenizer, and the OpenVINO tokenizer and detokenizer (copied from ``source``, else converted)."""
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if all((source / name).is_file() for name in TOKENIZER_FILES):
        for name in TOKENIZER_FILES:
            shutil.copy2(source / name, folder / name)
    elif tokenizer is not None:
        convert_tokenizer(tokenizer, folder)
