"""The export cache's entries as users see them: listed, cleared, verified, shown as a table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheError, OptionError
from .cache import cache_root, key_lock
from .files import remove
from .integrity import ENTRIES_DIR, USED_FILE, verify, verify_entries
from .manifest import MANIFEST_FILE


def verify_cache(key: str | None = None, ov_cache_dir: str | os.PathLike[str] | None = None) -> dict[str, str | None]:
    """Re-hash every file of the export cache's entries (those whose key starts with ``key``, or all).

    Returns {entry key: None when intact, else what is wrong}. A damaged entry is rebuilt by the next
    load that needs it, or removed with ``ov-causal cache clear``. A ``key`` no entry starts with raises
    ``OptionError`` (a mistyped key is not a clean cache).

    Example:
        >>> damaged = {k: v for k, v in verify_cache().items() if v}
    """
    root = cache_root(ov_cache_dir)
    results = verify_entries(root, key)
    if key is not None and not results:
        raise OptionError(f"no entry of the export cache {root} has a key starting with {key!r}: nothing was "
                          "verified. See 'ov-causal cache list' for the keys, or leave the key out to verify every "
                          "entry.")
    return results


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


def _entry(folder: Path) -> Entry:
    if not folder.is_dir() or folder.is_symlink():
        st = folder.lstat()
        return Entry(folder.name, folder, "?", "?", st.st_size, st.st_mtime, "it is not a folder")
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest = manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        manifest = {}
    try:
        used = float((folder / USED_FILE).read_text())
    except (OSError, ValueError):
        used = folder.stat().st_mtime
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return Entry(folder.name, folder, str(manifest.get("source", "?")), str(manifest.get("preset", "?")), size, used,
                 verify(folder))


def list_entries(root: Path) -> list[Entry]:
    """Every entry under the root (a damaged one too, with its problem), most recently used first."""
    entries = root / ENTRIES_DIR
    if not entries.is_dir():
        return []
    found = [_entry(p) for p in sorted(entries.glob("*")) if not p.name.startswith(".")]
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
        stuck = entry.problem == "it is not a folder"
        if older_than is None or stuck or now - entry.last_used > older_than:
            try:
                with key_lock(root, entry.key):
                    remove(entry.folder)
            except OSError as exc:
                raise CacheError(f"cannot remove {entry.folder} ({exc.strerror}): this user cannot write the export "
                                 f"cache {root}. Run as its owner, or remove the folder by hand.") from exc
            removed.append(entry)
    for stale in (root / ENTRIES_DIR).glob(".*.partial-*"):
        if older_than is None or now - stale.stat().st_mtime > max(older_than, 3600):
            remove(stale)
    return removed


def cache_table(ov_cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The export cache's entries (most recently used first) as a table: HTML in Jupyter, text with ``print``."""
    from ..ui.display import Table

    rows = tuple(
        (e.key[:12], e.source, e.preset, round(e.size / 2**20, 1), time.strftime("%Y-%m-%d %H:%M",
         time.localtime(e.last_used)), "ok" if e.problem is None else f"DAMAGED: {e.problem}")
        for e in list_entries(cache_root(ov_cache_dir))
    )
    return Table(("key", "source", "preset", "MiB", "last used", "state"), rows,
                 f"Export cache {cache_root(ov_cache_dir)}")
