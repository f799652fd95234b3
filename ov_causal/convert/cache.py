"""A persistent cache of exported models: export once, load in a second in any later process.

Layout under the root (``~/.cache/ov_causal`` by default)::

    entries/<key>/            a finished export (IR, tokenizers, ov_causal.json, entry.json)
    entries/<key>/compiled/   OpenVINO's compiled-model cache (CACHE_DIR) of the transformers loop: one blob per
                              device (devices.json); GenAI's engines on CPU get none (``genai_properties``)
    entries/<key>/last_used   when the entry was last loaded (the size cap evicts the least recently used)
    entries/.<key>.partial-*  an export in progress (or left by a killed process): never trusted
    locks/<key>.lock          held while one process builds the entry
    locks/<key>.compile.lock  held while OpenVINO compiles into the entry's compiled/ folder
    locks/<key>.use.lock      shared by every process that has the entry loaded (``cache_locks``)

An entry is trusted only when its ``entry.json`` lists every file with the sha256 of its whole
content, taken when it was published. A file whose size, mtime or ctime differ from those recorded
with the hash is re-hashed in full before use (``ov_causal.convert.integrity``); ``verify_entries``
(``ov-causal cache verify``) re-hashes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CacheError, warn
from .cache_entries import enforce_limit, size_limit
from .cache_locks import READ_ONLY, ensure_folder, hold_entry, key_lock
from .cache_locks import cache_root as cache_root  # its home before cache_locks: still imported from here
from .files import remove, write_json, write_nofollow
from .integrity import COMPILED_DIR, ENTRIES_DIR, ENTRY_FILE, USED_FILE, check_entry, file_records, verify

_SAMPLE = 1 << 20  # bytes read from the start, middle and end of a large file for its quick hash


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


def _entry_compiled_dir(properties: Mapping[str, Any]) -> Path | None:
    """The ``compiled/`` folder of an export-cache entry that ``properties`` name as CACHE_DIR, else None."""
    cache_dir = properties.get("CACHE_DIR")
    compiled = Path(str(cache_dir)) if cache_dir else None
    if compiled is None or compiled.name != COMPILED_DIR or not (compiled.parent / ENTRY_FILE).is_file():
        return None
    return compiled


def genai_properties(properties: Mapping[str, Any], device: str) -> dict[str, Any]:
    """``properties`` for a GenAI engine (``LLMPipeline``, ``ContinuousBatchingPipeline``) on ``device``: without
    the export-cache entry's CACHE_DIR on CPU, where the blob would be written on every load and never read.

    Both engines run paged attention by default, and OpenVINO 2026.4's CPU plugin cannot import a compiled
    PagedAttention model ("Runtime info k_head_size and num_k_heads are required for PagedAttention node"):
    OpenVINO then drops the blob, compiles again and writes a new one, an IR-sized copy per entry that every
    load pays to write (measured by ``scripts/compiled_blobs.py``, numbers in docs/cache.md). A CACHE_DIR of the
    user's own, another device, or ``ATTENTION_BACKEND="SDPA"`` (whose blob loads) keep it.
    """
    out = dict(properties)
    sdpa = str(out.get("ATTENTION_BACKEND", "")).upper() == "SDPA"
    if device.upper().startswith("CPU") and not sdpa and _entry_compiled_dir(out) is not None:
        out.pop("CACHE_DIR")
    return out


@contextmanager
def compiling(properties: Mapping[str, Any], device: str = "CPU") -> Iterator[None]:
    """Hold the entry's compile lock while OpenVINO compiles with ``CACHE_DIR`` in an export-cache entry.

    OpenVINO writes its compiled blob into CACHE_DIR in place; a process that maps a blob another
    one is still writing dies of SIGBUS or runs half-written weights. Under this lock a blob is only
    read once complete. A CACHE_DIR outside the export cache (the user's own) is not locked; a
    read-only cache is not locked either (OpenVINO cannot write blobs there).

    A compile that wrote a blob removes the entry's older blobs for ``device`` (another runtime, another
    ``ov_config``): an entry keeps one compiled copy per device (``BLOB_INDEX`` says whose each is).

    Example:
        >>> with compiling(model.ov_config, "CPU"):
        ...     model.compile()
    """
    compiled = _entry_compiled_dir(properties)
    if compiled is None:
        yield
        return
    root, key = compiled.parent.parent.parent, compiled.parent.name
    try:
        lock = key_lock(root, f"{key}.compile")
        lock.__enter__()
    except OSError as exc:
        if exc.errno not in READ_ONLY:
            raise
        yield
        return
    try:
        before = _blob_stats(compiled)
        yield
        _keep_one_blob(compiled, before, device.upper())
    finally:
        lock.__exit__(None, None, None)


BLOB_INDEX = "devices.json"  # in an entry's compiled/: {blob file name: device it was compiled for}


def _blob_stats(compiled: Path) -> dict[str, tuple[int, int]]:
    """{file name: (inode, mtime)} of the blobs in ``compiled`` (a rewritten blob changes both)."""
    stats = {}
    for path in compiled.glob("*"):
        if path.name != BLOB_INDEX and not path.name.startswith("."):
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            stats[path.name] = (st.st_ino, st.st_mtime_ns)
    return stats


def _keep_one_blob(compiled: Path, before: dict[str, tuple[int, int]], device: str) -> None:
    """After a compile: if it wrote blobs, drop the older ones of the same device (or of no recorded device)."""
    after = _blob_stats(compiled)
    written = {name for name, st in after.items() if before.get(name) != st}
    if not written:
        return  # loaded from a blob (or compiled without caching): nothing changes
    try:
        index = json.loads((compiled / BLOB_INDEX).read_text(encoding="utf-8"))
        index = index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        index = {}
    for name in after.keys() - written:
        if index.get(name, device) == device:  # removing a blob another process maps is safe: the inode stays
            remove(compiled / name)
            index.pop(name, None)
    index = {name: dev for name, dev in index.items() if name in after}
    index.update(dict.fromkeys(written, device))
    try:
        write_json(compiled / BLOB_INDEX, index)
    except OSError:
        pass


@dataclass(frozen=True)
class Hit:
    """A cache lookup: the entry folder and whether it was already there.

    ``read_only``: found intact in a cache this process cannot write (nothing was written to it).
    ``workdir``: set when the cache could not be used: the export lives in this temporary folder.
    ``use``: the entry's shared use lock (``cache_locks.hold_entry``), held while this object lives: the size cap
    does not evict an entry a process has loaded.
    """

    folder: Path
    hit: bool
    read_only: bool = False
    workdir: tempfile.TemporaryDirectory | None = None
    use: Any = field(default=None, compare=False, repr=False)

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

    ``build`` must create ``target`` atomically (it is a path that does not exist yet). The entry returned is held
    in use (``Hit.use``); after a build, least recently used entries over $OV_CAUSAL_CACHE_MAX_GB are evicted.
    """
    entries = root / ENTRIES_DIR
    size_limit()  # a malformed cap is refused before the export, not after it
    lock = key_lock(root, key)
    try:
        lock.__enter__()
    except OSError as exc:
        if not isinstance(exc, CacheError) and exc.errno in READ_ONLY:
            return _uncached(root, key, build, exc.strerror or "permission denied")
        raise
    try:
        hit = _get_or_build_locked(entries, key, parts, build)
        if hit.workdir is None:  # held before the build lock is released: no eviction can come in between
            hit = replace(hit, use=hold_entry(hit.folder))
    finally:
        lock.__exit__(None, None, None)
    if not hit.hit and hit.workdir is None:
        enforce_limit(root, keep=key)
    return hit


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
        if isinstance(exc, CacheError) or exc.errno not in READ_ONLY:
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
    ensure_folder(entries)
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
