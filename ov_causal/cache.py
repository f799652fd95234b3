"""A persistent cache of exported models: export once, load in a second in any later process.

Layout under the root (``~/.cache/ov_causal`` by default)::

    entries/<key>/            a finished export (IR, tokenizers, ov_causal.json, entry.json)
    entries/<key>/compiled/   OpenVINO's compiled-model cache (CACHE_DIR) for this entry
    entries/.<key>.partial-*  an export in progress (or left by a killed process): never trusted
    locks/<key>.lock          held while one process builds the entry

An entry is trusted only when its ``entry.json`` lists every file with the size it has now and a
hash of its content that still matches.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptionError

ENTRY_FILE = "entry.json"
COMPILED_DIR = "compiled"
USED_FILE = "last_used"
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


def _file_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "hash": quick_hash(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (ENTRY_FILE, USED_FILE) and COMPILED_DIR not in p.relative_to(folder).parts
    }


def verify(entry: Path) -> str | None:
    """None when the entry is intact, else what is wrong with it."""
    try:
        recorded = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return f"{ENTRY_FILE} is missing or unreadable"
    for name, record in recorded.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != record["size"]:
            return f"{name} has {path.stat().st_size} bytes instead of {record['size']}"
        if quick_hash(path) != record["hash"]:
            return f"{name} was altered"
    return None


@contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
    """An inter-process lock for one key; the OS releases it if the holder dies."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{key}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Hit:
    """A cache lookup: the entry folder and whether it was already there."""

    folder: Path
    hit: bool

    @property
    def compiled_dir(self) -> Path:
        return self.folder / COMPILED_DIR


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def get_or_build(root: Path, key: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Hit:
    """Return the entry for ``key``, building it with ``build(target)`` under the lock if needed.

    ``build`` must create ``target`` atomically (it is a path that does not exist yet).
    """
    entries = root / "entries"
    entry = entries / key
    with _locked(root, key):
        if entry.exists():
            problem = verify(entry)
            if problem is None:
                (entry / USED_FILE).write_text(str(time.time()))
                return Hit(entry, hit=True)
            warnings.warn(f"cache entry {entry} is damaged ({problem}); rebuilding it.", stacklevel=3)
            _remove(entry)
        for stale in entries.glob(f".{key}.partial-*"):  # left by a killed process
            _remove(stale)
        build(entry)
        try:
            records = {"key": key, "parts": parts, "files": _file_records(entry), "created": time.time()}
            (entry / ENTRY_FILE).write_text(json.dumps(records, indent=2, default=str), encoding="utf-8")
            (entry / USED_FILE).write_text(str(time.time()))
        except BaseException:  # e.g. the disk filled up: leave no entry without its records
            _remove(entry)
            raise
        return Hit(entry, hit=False)


@dataclass(frozen=True)
class Entry:
    """One cached export, as ``ov-causal cache list`` shows it."""

    key: str
    folder: Path
    source: str
    preset: str
    size: int
    last_used: float
    problem: str | None

    def row(self) -> str:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used))
        state = "ok" if self.problem is None else f"DAMAGED: {self.problem}"
        return f"{self.key[:12]}  {self.size / 2**20:9.1f} MiB  {used}  {self.preset:16s}  {self.source}  {state}"


def list_entries(root: Path) -> list[Entry]:
    """Every entry under the root, most recently used first."""
    found = []
    for folder in sorted((root / "entries").glob("*")):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            manifest = json.loads((folder / "ov_causal.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        try:
            used = float((folder / USED_FILE).read_text())
        except (OSError, ValueError):
            used = folder.stat().st_mtime
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        found.append(
            Entry(folder.name, folder, manifest.get("source", "?"), manifest.get("preset", "?"), size, used,
                  verify(folder))
        )
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def parse_age(text: str) -> float:
    """'30d', '12h', '45m' or '90s' -> seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise OptionError(f"--older-than {text!r} is not valid: use a number and a unit, e.g. 30d, 12h, 45m.") from None


def clear(root: Path, older_than: float | None = None) -> list[Entry]:
    """Remove entries (those unused for ``older_than`` seconds, or all) and stale partial exports."""
    now = time.time()
    removed = []
    for entry in list_entries(root):
        if older_than is None or now - entry.last_used > older_than:
            with _locked(root, entry.key):
                _remove(entry.folder)
            removed.append(entry)
    for stale in (root / "entries").glob(".*.partial-*"):
        if older_than is None or now - stale.stat().st_mtime > max(older_than, 3600):
            _remove(stale)
    return removed


def cache_table(ov_cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The export cache's entries (most recently used first) as a table: HTML in Jupyter, text with ``print``."""
    from .display import Table

    rows = tuple(
        (e.key[:12], e.source, e.preset, round(e.size / 2**20, 1), time.strftime("%Y-%m-%d %H:%M",
         time.localtime(e.last_used)), "ok" if e.problem is None else f"DAMAGED: {e.problem}")
        for e in list_entries(cache_root(ov_cache_dir))
    )
    return Table(("key", "source", "preset", "MiB", "last used", "state"), rows,
                 f"Export cache {cache_root(ov_cache_dir)}")
