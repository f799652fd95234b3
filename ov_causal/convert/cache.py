"""A persistent cache of exported models: export once, load in a second in any later process.

Layout under the root (``~/.cache/ov_causal`` by default)::

    entries/<key>/            a finished export (IR, tokenizers, ov_causal.json, entry.json)
    entries/<key>/compiled/   OpenVINO's compiled-model cache (CACHE_DIR) for this entry
    entries/.<key>.partial-*  an export in progress (or left by a killed process): never trusted
    locks/<key>.lock          held while one process builds the entry
    locks/<key>.compile.lock  held while OpenVINO compiles into the entry's compiled/ folder

An entry is trusted only when its ``entry.json`` lists every file with the sha256 of its whole
content, taken when it was published. A file whose size, mtime or ctime differ from those recorded
with the hash is re-hashed in full before use (``ov_causal.convert.integrity``); ``verify_entries``
(``ov-causal cache verify``) re-hashes everything.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheError, warn
from .files import remove, write_json, write_nofollow
from .integrity import COMPILED_DIR, ENTRIES_DIR, ENTRY_FILE, USED_FILE, check_entry, file_records, verify

CACHE_ENV = "OV_CAUSAL_CACHE_DIR"
_SAMPLE = 1 << 20  # bytes read from the start, middle and end of a large file for its quick hash


def cache_root(ov_cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the cache lives: the keyword, else $OV_CAUSAL_CACHE_DIR, else $XDG_CACHE_HOME/ov_causal."""
    if ov_cache_dir is not None:
        return Path(ov_cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ov_causal"


def quick_hash(path: Path) -> str:
    """sha256 of a file, or for files over 3 MiB of its size and first, middle and last MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= 3 * _SAMPLE:
            digest.update(f.read())
        else:
            digest.update(str(size).encode())
            for offset in (0, size // 2, size - _SAMPLE):
                f.seek(offset)
                digest.update(f.read(_SAMPLE))
    return digest.hexdigest()


def folder_fingerprint(folder: Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """A hash of the names, sizes and contents (sampled for large files) of a folder's files."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0{quick_hash(path)}\n".encode())
    return digest.hexdigest()


def make_key(parts: dict[str, Any]) -> str:
    """The entry name: a hash of everything that changes the export."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def _ensure_folder(path: Path) -> None:
    """Make ``path`` a folder, replacing a file (or dead symlink) that stands where it should be."""
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        warn(f"{path} is a file where ov_causal keeps a folder of its cache; replacing it.")
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def _open_lock(path: Path) -> Any:
    """The lock file, opened without following a link (a symlink or FIFO standing there is replaced)."""
    if path.is_dir() and not path.is_symlink():
        warn(f"{path} is a folder where ov_causal keeps a lock file; replacing it.")
        shutil.rmtree(path)
    elif (path.is_symlink() or path.exists()) and not stat.S_ISREG(path.lstat().st_mode):
        warn(f"{path} is a link or special file where ov_causal keeps a lock file; replacing it.")
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    return os.fdopen(fd, "a")


@contextmanager
def key_lock(root: Path, key: str) -> Iterator[None]:
    """An inter-process lock for one key; the OS releases it if the holder dies.

    Raises ``OSError`` (EACCES/EROFS) when the cache cannot be written; a file or folder standing
    where a lock belongs is replaced with a warning.
    """
    try:
        _ensure_folder(root / "locks")
        handle = _open_lock(root / "locks" / f"{key}.lock")
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise
        raise CacheError(
            f"the lock {root / 'locks' / (key + '.lock')} of the export cache cannot be used ({exc.strerror}). "
            f"Remove {root / 'locks'}, or pass ov_cache_dir= another folder."
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def compiling(properties: Mapping[str, Any]) -> Iterator[None]:
    """Hold the entry's compile lock while OpenVINO compiles with ``CACHE_DIR`` in an export-cache entry.

    OpenVINO writes its compiled blob into CACHE_DIR in place; a process that maps a blob another
    one is still writing dies of SIGBUS or runs half-written weights. Under this lock a blob is only
    read once complete. A CACHE_DIR outside the export cache (the user's own) is not locked; a
    read-only cache is not locked either (OpenVINO cannot write blobs there).

    Example:
        >>> with compiling(model.ov_config):
        ...     model.compile()
    """
    cache_dir = properties.get("CACHE_DIR")
    compiled = Path(str(cache_dir)) if cache_dir else None
    if compiled is None or compiled.name != COMPILED_DIR or not (compiled.parent / ENTRY_FILE).is_file():
        yield
        return
    root, key = compiled.parent.parent.parent, compiled.parent.name
    try:
        lock = key_lock(root, f"{key}.compile")
        lock.__enter__()
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise
        yield
        return
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@dataclass(frozen=True)
class Hit:
    """A cache lookup: the entry folder and whether it was already there.

    ``read_only``: found intact in a cache this process cannot write (nothing was written to it).
    ``workdir``: set when the cache could not be used: the export lives in this temporary folder.
    """

    folder: Path
    hit: bool
    read_only: bool = False
    workdir: tempfile.TemporaryDirectory | None = None

    @property
    def compiled_dir(self) -> Path:
        """OpenVINO's CACHE_DIR: the entry's ``compiled`` folder (the entry itself when read-only and absent,
        which OpenVINO reads but cannot write: it compiles without caching)."""
        compiled = self.folder / COMPILED_DIR
        return self.folder if self.read_only and not compiled.is_dir() else compiled


def touch_used(entry: Path) -> None:
    """Record a use of the entry (its age in ``cache list`` and for ``cache clear --older-than``).

    Written in place, never through a link: a symlink standing there is left alone (``verify`` reports it).
    """
    try:
        write_nofollow(entry / USED_FILE, str(time.time()).encode())
    except OSError:  # a read-only entry in a writable cache: the age it shows is its folder's
        pass


def _refresh(entry: Path, record: dict[str, Any] | None) -> None:
    """Record the new file times of files that were re-hashed and found intact (the next load skips the hash)."""
    if record is not None:
        try:
            write_json(entry / ENTRY_FILE, record)
        except OSError:
            pass


def _uncached(root: Path, key: str, build: Callable[[Path], None], why: str) -> Hit:
    """A read-only cache: its intact entry as it is, or an export into a temporary folder."""
    entry = root / ENTRIES_DIR / key
    problem = verify(entry) if entry.exists() else "it has no entry for this model"
    if problem is None:
        return Hit(entry, hit=True, read_only=True)
    warn(
        f"the export cache {root} cannot be written ({why}) and {problem}: exporting into a temporary folder, "
        "not cached. Make the cache writable, or pass ov_cache_dir= (or set OV_CAUSAL_CACHE_DIR to) a writable "
        "folder.")
    return _temporary_export(build)


def _temporary_export(build: Callable[[Path], None]) -> Hit:
    """Export into a temporary folder (removed with the model), bypassing the cache."""
    workdir = tempfile.TemporaryDirectory(prefix="ov_causal-")
    target = Path(workdir.name) / "model"
    try:
        build(target)
    except BaseException:
        workdir.cleanup()
        raise
    return Hit(target, hit=False, workdir=workdir)


def _removable(entry: Path) -> bool:
    """Whether this user may remove the entry: its parent and every folder in it writable (root may, always)."""
    folders = [entry.parent] + ([] if entry.is_symlink() else [Path(f) for f, _, _ in os.walk(entry)])
    return all(os.access(f, os.W_OK | os.X_OK) for f in folders)


def _discard(entry: Path) -> bool:
    """Remove a damaged entry; False (nothing removed) when this user cannot."""
    if not _removable(entry):
        return False
    remove(entry)
    return not (entry.exists() or entry.is_symlink())


def _bypass(entry: Path, problem: str, build: Callable[[Path], None]) -> Hit:
    """A damaged entry this user cannot remove (a read-only folder): left as it is, the export made in a temporary
    folder, as for a read-only cache."""
    warn(
        f"cache entry {entry} is damaged ({problem}) and this user cannot remove it (its folder is read-only): "
        "exporting into a temporary folder, not cached. Have its owner run `ov-causal cache clear`, or pass "
        "ov_cache_dir= (or set OV_CAUSAL_CACHE_DIR to) a folder of your own.")
    return _temporary_export(build)


def get_or_build(root: Path, key: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Hit:
    """Return the entry for ``key``, building it with ``build(target)`` under the lock if needed.

    ``build`` must create ``target`` atomically (it is a path that does not exist yet).
    """
    entries = root / ENTRIES_DIR
    lock = key_lock(root, key)
    try:
        lock.__enter__()
    except OSError as exc:
        if not isinstance(exc, CacheError) and exc.errno in _READ_ONLY:
            return _uncached(root, key, build, exc.strerror or "permission denied")
        raise
    try:
        return _get_or_build_locked(entries, key, parts, build)
    finally:
        lock.__exit__(None, None, None)


@contextmanager
def held_entry(root: Path, key: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Iterator[Hit]:
    """``get_or_build``'s entry with its lock held until the block ends: no other process removes or rebuilds it
    while the block reads it (``cache clear`` takes the same lock).

    An entry built here is removed again if the block fails (a failed load leaves the cache as it found it). In a
    cache this process cannot write: the intact read-only entry, or a temporary export removed after the block.

    Example:
        >>> with held_entry(root, key, parts, export_fp32) as base:
        ...     derive_export(base.folder, target, compression, name)
    """
    lock = key_lock(root, key)
    try:
        lock.__enter__()
    except OSError as exc:
        if isinstance(exc, CacheError) or exc.errno not in _READ_ONLY:
            raise
        hit = _uncached(root, key, build, exc.strerror or "permission denied")
        try:
            yield hit
        finally:
            if hit.workdir is not None:
                hit.workdir.cleanup()
        return
    try:
        hit = _get_or_build_locked(root / ENTRIES_DIR, key, parts, build)
        try:
            yield hit
        except BaseException:
            if not hit.hit and hit.workdir is None:
                remove(hit.folder)
            raise
        finally:
            if hit.workdir is not None:  # a damaged entry this user cannot remove was bypassed
                hit.workdir.cleanup()
    finally:
        lock.__exit__(None, None, None)


def _get_or_build_locked(entries: Path, key: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Hit:
    entry = entries / key
    if entry.exists() or entry.is_symlink():
        problem, record = check_entry(entry, full=False)
        if problem is None:
            _refresh(entry, record)
            touch_used(entry)
            return Hit(entry, hit=True)
        if not _discard(entry):
            return _bypass(entry, problem, build)
        warn(f"cache entry {entry} is damaged ({problem}); rebuilding it.")
    _ensure_folder(entries)
    for stale in entries.glob(f".{key}.partial-*"):  # left by a killed process
        remove(stale)
    build(entry)
    try:
        records = {"key": key, "parts": parts, "files": file_records(entry), "created": time.time()}
        write_json(entry / ENTRY_FILE, records)
        touch_used(entry)
    except BaseException:  # e.g. the disk filled up: leave no entry without its records
        remove(entry)
        raise
    return Hit(entry, hit=False)
