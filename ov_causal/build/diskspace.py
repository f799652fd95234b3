"""Disk space for an export: a rough estimate, a check before writing, and full-disk errors named as such.

OpenVINO and optimum do not always raise ``OSError(ENOSPC)`` on a full disk: OpenVINO's writer
raises ``RuntimeError: basic_ios::clear: iostream error``. Such an error is taken for a full disk
when the folder has less free space left than the export needs.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config.presets import Compression
from ..errors import ExportError, OVCausalError
from .cache import CACHE_ENV
from .sources import IR_FILE

_FULL_ERRNOS = tuple(n for n in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if n is not None)
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
_WRITE_ERRORS = ("iostream error", "basic_ios::clear")
_MARGIN = 32 * 2**20  # tokenizers, config and manifest files, filesystem slack
_STORED_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.6}  # int4: groups' scales, int8 head and embeddings


def export_bytes(parameters: int, compression: Compression) -> int:
    """Bytes an export of ``parameters`` weights needs at its peak: the uncompressed IR plus the compressed copy
    written beside it before it replaces the original."""
    uncompressed = parameters * (2.0 if compression.weights == "fp16" else 4.0)
    compressed = parameters * _STORED_BYTES[compression.weights] if compression.quantized else 0.0
    return int(uncompressed + compressed) + _MARGIN


def compress_bytes(folder: Path, compression: Compression) -> int:
    """Bytes compressing a copy of the uncompressed export in ``folder`` needs: the copy plus its compressed IR."""
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    weights = folder / IR_FILE.replace(".xml", ".bin")
    ir = weights.stat().st_size if weights.is_file() else size
    return size + int(ir * _STORED_BYTES[compression.weights] / 4.0) + _MARGIN


def free_bytes(folder: Path) -> int:
    """Free space on the filesystem of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


def _advice(folder: Path) -> str:
    if Path(folder).absolute().is_relative_to(Path(tempfile.gettempdir()).absolute()):
        return (
            " It was written to the temporary folder: set TMPDIR to a disk with room, or export into the export "
            f"cache ({CACHE_ENV}=/path/with/space) or a folder of your own. Nothing was written."
        )
    return (
        f" Free space there, or move the export cache to a disk with room: set {CACHE_ENV}=/path/with/space (or "
        "pass ov_cache_dir=); `ov-causal cache clear` removes old cached exports. Nothing was written."
    )


def disk_full_error(folder: Path, needed: int, name: str, cause: str = "") -> ExportError:
    """The error for a full disk: the folder, the space needed and free, and where to move the cache."""
    because = f" ({cause})" if cause else ""
    return ExportError(
        f"not enough disk space to export {name!r} into {str(folder)!r}{because}: about {_gib(needed)} is "
        f"needed, {_gib(free_bytes(folder))} is free.{_advice(folder)}"
    )


def check_free_space(folder: Path, needed: int, name: str) -> None:
    """Refuse before writing when ``folder``'s filesystem has less free space than ``needed``."""
    if free_bytes(folder) < needed:
        raise disk_full_error(folder, needed, name)


def _full_errno(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def is_write_error(exc: BaseException) -> bool:
    """OpenVINO's failed write: 'basic_ios::clear: iostream error' (its message on a full disk, among others)."""
    return any(t in str(exc) for t in _WRITE_ERRORS)


def is_disk_full(exc: BaseException, folder: Path, needed: int) -> bool:
    """Whether ``exc`` came from a full disk: ENOSPC/EDQUOT anywhere in its chain, or a write error
    (OpenVINO's iostream error) while ``folder`` has less free space than the export needs."""
    if _full_errno(exc) or any(t in str(exc) for t in _FULL_TEXTS):
        return True
    return is_write_error(exc) and free_bytes(folder) < needed


@contextmanager
def disk_full_errors(folder: Path, needed: int, name: str) -> Iterator[None]:
    """Turn a full-disk failure inside the block into an ``ExportError`` naming the folder and the space needed.

    The check runs before the caller's cleanup (so a half-written file still counts as used space).
    """
    try:
        yield
    except OVCausalError:
        raise  # already explained (a full disk met deeper down is named there)
    except Exception as exc:
        if not is_disk_full(exc, folder, needed):
            raise
        raise disk_full_error(folder, needed, name, f"{type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""
