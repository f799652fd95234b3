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
from .cache_locks import CACHE_ENV
from .integrity import ENTRIES_DIR
from .sources import IR_FILE

_FULL_ERRNOS = tuple(n for n in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if n is not None)
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
_WRITE_ERRORS = ("iostream error", "basic_ios::clear")
_MARGIN_SHARE = 0.1  # tokenizers, config and manifest files, filesystem slack: a tenth of the weights...
_MARGIN_FLOOR = 2 * 2**20  # ...and at least 2 MiB (a 0.6 MB export must not ask for 33 MiB)
_TEMP_PREFIX = "ov_causal-"  # the temporary folders ov_causal exports into (tempfile.TemporaryDirectory)
_STORED_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.6}  # int4: groups' scales, int8 head and embeddings


def export_bytes(parameters: int, compression: Compression) -> int:
    """Bytes an export of ``parameters`` weights needs at its peak: the uncompressed IR plus the compressed copy
    written beside it before it replaces the original."""
    uncompressed = parameters * (2.0 if compression.weights == "fp16" else 4.0)
    compressed = parameters * _STORED_BYTES[compression.weights] if compression.quantized else 0.0
    return with_margin(uncompressed + compressed)


def derived_bytes(parameters: int, compression: Compression, base_cached: bool) -> int:
    """Bytes a preset derived from a checkpoint's fp32 export needs: that export unless it is cached already,
    plus the derived one."""
    fp32 = 0.0 if base_cached else parameters * 4.0
    return with_margin(fp32 + parameters * _STORED_BYTES[compression.weights])


def derive_bytes(base: Path, compression: Compression) -> int:
    """Bytes deriving ``compression`` from the uncompressed export folder ``base`` writes: its small files and the
    compressed IR."""
    weights = base / IR_FILE.replace(".xml", ".bin")
    ir = weights.stat().st_size if weights.is_file() else 0
    return with_margin(folder_bytes(base) - ir + ir * _STORED_BYTES[compression.weights] / 4.0)


def with_margin(size: float) -> int:
    """``size`` bytes plus room for the small files and filesystem slack: a tenth, at least 2 MiB."""
    return int(size + max(_MARGIN_FLOOR, size * _MARGIN_SHARE))


def folder_bytes(folder: Path) -> int:
    """The size of the files directly in ``folder``."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def compress_bytes(folder: Path, compression: Compression) -> int:
    """Bytes compressing a copy of the uncompressed export in ``folder`` needs: the copy plus its compressed IR."""
    size = folder_bytes(folder)
    weights = folder / IR_FILE.replace(".xml", ".bin")
    ir = weights.stat().st_size if weights.is_file() else size
    return with_margin(size + ir * _STORED_BYTES[compression.weights] / 4.0)


def free_bytes(folder: Path) -> int:
    """Free space on the filesystem of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


def _is_cache(folder: Path) -> bool:
    """The export cache's root or its ``entries`` folder (where a cached export is written)."""
    return folder.name == ENTRIES_DIR or (folder / ENTRIES_DIR).is_dir() or (folder / "locks").is_dir()


def _is_temporary(folder: Path) -> bool:
    """One of ov_causal's temporary folders (an export not cached, a compressed copy of an export folder)."""
    folder = Path(folder).absolute()
    return folder.name.startswith(_TEMP_PREFIX) and folder.parent == Path(tempfile.gettempdir()).absolute()


def _advice(folder: Path) -> str:
    """What to do, by which disk is full: the export cache's, the temporary folder's, or a folder the user chose."""
    if _is_cache(folder):
        return (
            f" Free space there, or move the export cache to a disk with room: set {CACHE_ENV}=/path/with/space (or "
            "pass ov_cache_dir=); `ov-causal cache clear` removes old cached exports. Nothing was written."
        )
    if _is_temporary(folder):
        return (
            " It was written to the temporary folder: set TMPDIR to a disk with room, or export into the export "
            f"cache ({CACHE_ENV}=/path/with/space) or a folder of your own. Nothing was written."
        )
    return (" Free space there, or choose a folder on a disk with room. Nothing was written: what the folder held "
            "before is intact.")


def disk_full_error(folder: Path, needed: int, name: str, cause: str = "", action: str = "export") -> ExportError:
    """The error for a full disk: the folder, the space needed and free, and what to do (by which disk is full)."""
    because = f" ({cause})" if cause else ""
    return ExportError(
        f"not enough disk space to {action} {name!r} into {str(folder)!r}{because}: about {_gib(needed)} is "
        f"needed, {_gib(free_bytes(folder))} is free.{_advice(folder)}"
    )


def check_free_space(folder: Path, needed: int, name: str, action: str = "export") -> None:
    """Refuse before writing when ``folder``'s filesystem has less free space than ``needed``."""
    if free_bytes(folder) < needed:
        raise disk_full_error(folder, needed, name, action=action)


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
def disk_full_errors(folder: Path, needed: int, name: str, action: str = "export") -> Iterator[None]:
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
        raise disk_full_error(folder, needed, name, f"{type(exc).__name__}: {_first_line(exc)}", action) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""
