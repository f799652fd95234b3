"""Where a model comes from: an exported OpenVINO folder, a local checkpoint, or a Hub id."""

from __future__ import annotations

import errno
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config.hub import HubOptions
from ..errors import ModelSourceError, UnsupportedModelError, suggest
from .files import recover

IR_FILE = "openvino_model.xml"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "openvino_tokenizer.xml"
DETOKENIZER_FILE = "openvino_detokenizer.xml"
DEMO_MODEL = Path(__file__).parents[1] / "demo_model"  # the small model shipped with the package
GGUF_SUFFIX = ".gguf"
TASK = "text-generation-with-past"
MODEL_FOLDER = f"{CONFIG_FILE} and the weights of a Hugging Face checkpoint, or the {IR_FILE} of an OpenVINO export"


@dataclass(frozen=True)
class Source:
    """A resolved model location.

    ``kind`` is ``openvino`` (a folder with ``openvino_model.xml``), ``checkpoint`` (a folder with
    a transformers ``config.json``) or ``gguf`` (``path`` is a llama.cpp GGUF file); ``name`` is what the user
    passed (kept for the manifest).
    """

    kind: Literal["openvino", "checkpoint", "gguf"]
    path: Path
    name: str
    commit: str | None = None  # the Hub commit of a downloaded snapshot
    content: str | None = None  # a hash of the files it was made from, standing in for the folder's (GGUF routes)


def looks_like_path(name: str) -> bool:
    """A Hub id is 'name' or 'org/name'; anything else that does not exist is a missing path."""
    return not name or name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _download(repo_id: str, hub: HubOptions) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=hub.revision,
                token=hub.token,
                cache_dir=hub.cache_dir,
                local_files_only=hub.local_files_only,
                force_download=hub.force_download,
            )
        )
    except Exception as exc:  # the hub client raises many types: offline, 404, auth, bad id
        raise ModelSourceError(
            f"{repo_id!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Check the model id and your network or token, or pass the path of a local folder."
        ) from exc


def _check_link(path: Path) -> None:
    """Refuse a symlink that leads nowhere (a loop, or a missing target) with what it is."""
    if not path.is_symlink() or path.exists():
        return
    try:
        path.stat()
    except OSError as exc:
        what = "a symlink loop" if exc.errno == errno.ELOOP else f"a symlink to {os.readlink(path)!r}, which is missing"
        raise ModelSourceError(
            f"{path} is {what}. Replace it with the file itself (or a link to an existing file)."
        ) from None


def classify(folder: Path, name: str) -> Source:
    """Decide whether a local folder is an OpenVINO export or a transformers checkpoint."""
    for file_name in (IR_FILE, CONFIG_FILE):
        _check_link(folder / file_name)
    if (folder / IR_FILE).is_file():
        return Source("openvino", folder, name)
    if (folder / CONFIG_FILE).is_file():
        return Source("checkpoint", folder, name)
    content = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise ModelSourceError(
        f"{str(folder)!r} is neither an OpenVINO export (no {IR_FILE}) nor a Hugging Face checkpoint "
        f"(no config.json); it holds {content}. Pass the folder that contains one of those files."
    )


def find_local(model_id: str | os.PathLike[str], subfolder: str = "") -> Source | None:
    """The local model ``model_id`` names, or None when it reads as a Hub id (``org/name``) and is not a folder here.

    Reads only the folder listing (no torch, transformers or optimum import), so the CLI checks a path with it
    before loading anything. Raises ModelSourceError for a path that does not exist, a file, or a folder that
    holds neither an OpenVINO export nor a checkpoint.
    """
    name = os.fspath(model_id)
    path = Path(name).expanduser()
    if not path.exists():
        recover(path)  # a save into this folder killed while it swapped folders: restore the old save
    if path.exists():
        if path.is_file() and path.suffix.lower() == GGUF_SUFFIX:
            return Source("gguf", path, name)
        if not path.is_dir():
            raise ModelSourceError(f"{name!r} is a file; pass the folder that holds the model: {MODEL_FOLDER} "
                                   f"(or a llama.cpp {GGUF_SUFFIX} file).")
        return classify(path / subfolder if subfolder else path, name)
    if looks_like_path(name):
        relative = "" if path.is_absolute() else f" A relative path starts from {os.getcwd()}."
        raise ModelSourceError(
            f"{name!r} does not exist. Check the path, or pass a Hub id such as 'org/model'. "
            f"A model folder holds {MODEL_FOLDER}.{relative}"
        )
    return None


def resolve_source(model_id: str | os.PathLike[str], hub: HubOptions) -> Source:
    """Find the model: local folder first, then the Hub (downloaded to its usual cache)."""
    name = os.fspath(model_id)
    if hub.gguf_file:
        return gguf_in(name, hub)
    local = find_local(name, hub.subfolder)
    if local is not None:
        return local
    folder = _download(name, hub)
    source = classify(folder / hub.subfolder if hub.subfolder else folder, name)
    commit = folder.name if folder.parent.name == "snapshots" else None
    return Source(source.kind, source.path, name, commit)


def _gguf_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == GGUF_SUFFIX)


def gguf_in(name: str, hub: HubOptions) -> Source:
    """``from_pretrained(name, gguf_file=...)``: the GGUF file in a local folder, or downloaded from a Hub repo."""
    file_name = os.fspath(hub.gguf_file)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path / hub.subfolder if hub.subfolder else path
        target = folder / file_name
        if target.is_file():
            return Source("gguf", target, name)
        present = _gguf_files(folder) if folder.is_dir() else []
        raise ModelSourceError(
            f"gguf_file={file_name!r} is not in {str(folder)!r}." + (suggest(file_name, present) if present else "")
            + (f" GGUF files there: {', '.join(present)}." if present else " It holds no .gguf file.")
        )
    if path.is_file() or looks_like_path(name):
        raise ModelSourceError(f"{name!r} is not a folder: pass the folder that holds {file_name!r} with "
                               "gguf_file=, or the path of the .gguf file alone.")
    return Source("gguf", _download_file(name, file_name, hub), name)


def _download_file(repo_id: str, file_name: str, hub: HubOptions) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(
            repo_id, file_name, subfolder=hub.subfolder or None, revision=hub.revision, token=hub.token,
            cache_dir=hub.cache_dir, local_files_only=hub.local_files_only, force_download=hub.force_download,
        ))
    except Exception as exc:  # the hub client raises many types: offline, 404, auth, bad id
        raise ModelSourceError(
            f"gguf_file={file_name!r} of {repo_id!r} is not a local file and could not be fetched from the Hugging "
            f"Face Hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Check the repo id, the "
            "file name (as listed in the repo's files) and your network or token, or pass a local folder."
        ) from exc


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot read {folder / 'config.json'}: {exc}. Is the checkpoint complete?") from exc


def exportable_model_types() -> list[str]:
    """Model types optimum-intel can export for text generation."""
    import optimum.exporters.openvino  # noqa: F401 - registers the OpenVINO export configs
    from optimum.exporters.tasks import TasksManager

    return sorted(
        mt for mt, exporters in TasksManager._SUPPORTED_MODEL_TYPE.items()
        if TASK in exporters.get("openvino", {})
    )


def check_exportable(config: dict, folder: Path) -> str:
    """Return the model type, or raise UnsupportedModelError naming it and the supported ones."""
    model_type = config.get("model_type")
    if not model_type:
        raise UnsupportedModelError(f"{folder / 'config.json'} has no model_type; it is not a transformers checkpoint.")
    supported = exportable_model_types()
    if model_type.replace("_", "-") not in supported and model_type not in supported:
        raise UnsupportedModelError(
            f"architecture {model_type!r} cannot be exported for text generation by optimum-intel. "
            f"Supported architectures: {', '.join(supported)}."
        )
    return model_type


def _safetensors_parameters(path: Path) -> int:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    total = 0
    for key, meta in header.items():
        if key != "__metadata__":
            count = 1
            for dim in meta["shape"]:
                count *= dim
            total += count
    return total


def count_parameters(folder: Path) -> int:
    """Parameters of a checkpoint, read from safetensors headers (no weights loaded).

    Pickle checkpoints are estimated from file size assuming 2 bytes per parameter, the common
    dtype of published checkpoints.
    """
    tensors = sorted(folder.glob("*.safetensors"))
    if tensors:
        return sum(_safetensors_parameters(p) for p in tensors)
    return sum(p.stat().st_size for p in folder.glob("*.bin")) // 2
