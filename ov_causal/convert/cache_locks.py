"""Where the export cache lives, and the inter-process locks its entries are shared under.

Per entry key, under ``<root>/locks``:

    <key>.lock          exclusive while one process builds (or checks) the entry
    <key>.compile.lock  exclusive while OpenVINO writes a compiled blob into the entry's ``compiled/``
    <key>.use.lock      shared by every process that has the entry loaded (a model, an engine, a server);
                        the size cap (``OV_CAUSAL_CACHE_MAX_GB``) evicts an entry only when it can take all three
                        exclusively, without waiting

The OS releases a lock when its holder dies; lock files are opened without following a link.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import CacheError, warn
from .integrity import ENTRIES_DIR, ENTRY_FILE

CACHE_ENV = "OV_CAUSAL_CACHE_DIR"
LOCKS_DIR = "locks"
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)  # the cache cannot be written: used without locking


def cache_root(ov_cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the cache lives: the keyword, else $OV_CAUSAL_CACHE_DIR, else $XDG_CACHE_HOME/ov_causal."""
    if ov_cache_dir is not None:
        return Path(ov_cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ov_causal"


def ensure_folder(path: Path) -> None:
    """Make ``path`` a folder, replacing a file (or dead symlink) that stands where it should be."""
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        warn(f"{path} is a file where ov_causal keeps a folder of its cache; replacing it.")
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def open_lock(path: Path) -> IO[str]:
    """The lock file, opened without following a link (a symlink or FIFO standing there is replaced)."""
    if path.is_dir() and not path.is_symlink():
        warn(f"{path} is a folder where ov_causal keeps a lock file; replacing it.")
        shutil.rmtree(path)
    elif (path.is_symlink() or path.exists()) and not stat.S_ISREG(path.lstat().st_mode):
        warn(f"{path} is a link or special file where ov_causal keeps a lock file; replacing it.")
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    return os.fdopen(fd, "a")


def _lock_file(root: Path, name: str) -> IO[str]:
    """Open ``<root>/locks/<name>.lock``; ``OSError`` (EACCES/EROFS) when the cache cannot be written."""
    try:
        ensure_folder(root / LOCKS_DIR)
        return open_lock(root / LOCKS_DIR / f"{name}.lock")
    except OSError as exc:
        if exc.errno in READ_ONLY:
            raise
        raise CacheError(
            f"the lock {root / LOCKS_DIR / (name + '.lock')} of the export cache cannot be used ({exc.strerror}). "
            f"Remove {root / LOCKS_DIR}, or pass ov_cache_dir= another folder."
        ) from exc


@contextmanager
def key_lock(root: Path, key: str) -> Iterator[None]:
    """An inter-process lock for one key; the OS releases it if the holder dies.

    Raises ``OSError`` (EACCES/EROFS) when the cache cannot be written; a file or folder standing
    where a lock belongs is replaced with a warning.
    """
    with _lock_file(root, key) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def entry_locks(key: str) -> tuple[str, ...]:
    """The names of the locks an entry is built, compiled and used under (see the module docstring)."""
    return key, f"{key}.compile", f"{key}.use"


@contextmanager
def all_free(root: Path, names: tuple[str, ...]) -> Iterator[bool]:
    """Take every lock in ``names`` exclusively without waiting: yields True when all were free (held until the
    block ends), False when another process (or another holder in this one) holds one of them."""
    with ExitStack() as stack:
        for name in names:
            handle = stack.enter_context(_lock_file(root, name))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)
        yield True


def entry_of(folder: Path) -> tuple[Path, str] | None:
    """(cache root, key) when ``folder`` is an entry of an export cache, else None."""
    if folder.parent.name != ENTRIES_DIR or not (folder / ENTRY_FILE).is_file():
        return None
    return folder.parent.parent, folder.name


def hold_entry(folder: Path) -> Any:
    """Mark the entry at ``folder`` as in use by this process until the returned handle is closed or collected
    (a shared lock: the size cap never evicts it meanwhile). None for a folder outside the export cache, or a
    cache this user cannot write."""
    found = entry_of(folder)
    if found is None:
        return None
    root, key = found
    try:
        handle = _lock_file(root, f"{key}.use")
    except OSError as exc:
        if exc.errno in READ_ONLY:
            return None
        raise
    fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while an eviction of this very entry finishes
    return handle
