"""Crash-safe file operations: atomic JSON writes and all-or-nothing folder publishing.

A folder is built as ``.<name>.partial-*`` beside its target and swapped in whole. Where the OS can
exchange two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``) the target always exists;
elsewhere the old folder is first renamed to ``.<name>.backup-*``, which stays recoverable until the
new folder is in place. Each partial or backup folder is ``flock``-ed by the process working on it,
so a later process can tell the leftovers of a killed one (unlocked) from work in progress.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ExportError, warn

PARTIAL = ".partial-"
BACKUP = ".backup-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a reader sees the old file or the new one, never half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_nofollow(path: Path, data: bytes) -> None:
    """Overwrite the regular file ``path`` (or create it) in place, never through a link.

    Raises ``OSError`` when a symlink (ELOOP), a FIFO or device, or a file with other hard links stands
    at ``path``: writing there would change a file outside the folder.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise OSError(errno.EPERM, "not a regular file with a single link; refusing to write through it",
                          str(path))
        os.ftruncate(fd, 0)
        os.write(fd, data)
    finally:
        os.close(fd)


@contextmanager
def dir_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a folder: it marks the folder as in use by this process."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _abandoned(folder: Path) -> bool:
    """True when no live process holds the folder's lock (its owner finished or was killed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove a file, a symlink or a folder tree; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by another process
        return 0.0


def _siblings(target: Path, kind: str) -> list[Path]:
    """Folders a save into ``target`` left beside it (newest first)."""
    return sorted(target.parent.glob(f".{target.name}{kind}*"), key=_mtime, reverse=True)


def recover(target: Path) -> None:
    """Undo what a killed save left beside ``target``: restore its backup if the target is gone, drop the rest.

    Folders a live process is still working on are left alone.
    """
    if not target.parent.is_dir():
        return
    for backup in _siblings(target, BACKUP):
        if not _abandoned(backup):
            continue
        if not target.exists():
            os.rename(backup, target)
            warn(f"a save into {str(target)!r} was interrupted; the previous save was restored from "
                          f"{backup.name}.")
        else:
            remove(backup)
    for partial in _siblings(target, PARTIAL):
        if _abandoned(partial):
            remove(partial)


@contextmanager
def staging(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` (same filesystem), locked while in use and removed if the block fails.

    Leftovers of earlier killed saves into the same target are cleaned up first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent))
    try:
        with dir_lock(tmp):
            yield tmp
    except BaseException:
        remove(tmp)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Put into ``new`` what ``old`` holds that ``new`` does not (the user's own files), as hard links."""
    for item in old.iterdir():
        dest = new / item.name
        if item.is_dir() and not item.is_symlink():
            if dest.is_dir() and not dest.is_symlink():
                _carry_over(item, dest)
            elif not dest.exists():
                shutil.copytree(item, dest, symlinks=True, copy_function=_link_or_copy)
        elif not dest.exists() and not dest.is_symlink():
            if item.is_symlink():
                os.symlink(os.readlink(item), dest)
            else:
                _link_or_copy(str(item), str(dest))


def _libc_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with ``renameat2``; False where the OS or filesystem cannot."""
    name = ctypes.util.find_library("c")
    try:
        renameat2 = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


exchange = _libc_exchange  # replaced in tests to exercise the backup path


def _swap(tmp: Path, target: Path) -> Path:
    """Put ``tmp`` at ``target``; return where the old folder now is (to be removed)."""
    if exchange(tmp, target):
        return tmp
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}{BACKUP}", dir=target.parent))
    backup.rmdir()  # only the unique name is wanted
    with dir_lock(target):
        os.rename(target, backup)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(backup, target)
            raise
    return backup


def publish_folder(tmp: Path, target: Path) -> None:
    """Move a finished folder to ``target``, all or nothing.

    A missing or empty target is replaced by one rename. An existing folder is replaced whole:
    files in it that the new folder does not have (the user's own) are carried over first, so a kill
    at any moment leaves either the complete old folder or the complete new one.
    """
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise ExportError(f"cannot write a folder at {str(target)!r}: it is a file. Pass a folder path.")
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777 & ~_umask()
    os.chmod(tmp, mode)  # mkdtemp makes 0700 folders
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(tmp, target)
        return
    _carry_over(target, tmp)
    remove(_swap(tmp, target))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
