"""The export cache's entries as users see them: listed, cleared, verified, shown as a table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheError, OptionError, warn
from .cache_locks import CACHE_ENV, all_free, cache_root, entry_locks, key_lock
from .files import remove
from .integrity import COMPILED_DIR, ENTRIES_DIR, USED_FILE, verify, verify_entries
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
    """One cached export, as ``ov-causal cache list`` shows it.

    ``size``: bytes of every file in it (links not followed), of which ``compiled`` in OpenVINO's compiled
    blobs; ``adapters``: the LoRA adapters fused in, as (path, weight), from its manifest.
    """

    key: str
    folder: Path
    source: str
    preset: str
    size: int
    last_used: float
    problem: str | None
    compiled: int = 0
    adapters: tuple[tuple[str, float], ...] = ()

    @property
    def state(self) -> str:
        return "ok" if self.problem is None else f"DAMAGED: {self.problem}"

    @property
    def what(self) -> str:
        """The preset, with the number of LoRA adapters fused in: 'fp32', 'int8 + 2 LoRA'."""
        return self.preset + (f" + {len(self.adapters)} LoRA" if self.adapters else "")

    def lora(self) -> str:
        """The adapters fused in, e.g. '/ckpt/adapter-a (weight 1.0), /ckpt/adapter-b (weight 0.5)'; '' for none."""
        return ", ".join(f"{path} (weight {weight:g})" for path, weight in self.adapters)

    def row(self) -> str:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used))
        line = (f"{self.key[:12]}  {mib(self.size):>12s}  {mib(self.compiled):>12s}  {used}  {self.what:18s}  "
                f"{self.state:4s}  {self.source}")
        return line + "".join(f"\n{'':14}LoRA {path} (weight {weight:g})" for path, weight in self.adapters)


HEADER = f"{'key':12s}  {'size':>12s}  {'compiled':>12s}  {'last used':16s}  {'preset':18s}  state source"


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def gib(size: int) -> str:
    return f"{size / 2**30:,.2f} GiB"


def _sizes(folder: Path) -> tuple[int, int]:
    """(bytes of every file under ``folder``, bytes under its compiled/), links counted as links, never followed."""
    total = compiled = 0
    for base, _, names in os.walk(folder):
        for name in names:
            try:
                size = (Path(base) / name).lstat().st_size
            except OSError:  # removed meanwhile (a blob OpenVINO replaced)
                continue
            total += size
            if COMPILED_DIR in Path(base).relative_to(folder).parts:
                compiled += size
    return total, compiled


def _adapters(manifest: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    found = []
    for adapter in manifest.get("adapters") or ():
        if isinstance(adapter, dict):
            weight = adapter.get("weight", 1.0)
            found.append((str(adapter.get("path", "?")), float(weight) if isinstance(weight, (int, float)) else 1.0))
    return tuple(found)


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
    size, compiled = _sizes(folder)
    return Entry(folder.name, folder, str(manifest.get("source", "?")), str(manifest.get("preset", "?")), size, used,
                 verify(folder), compiled, _adapters(manifest))


def list_entries(root: Path) -> list[Entry]:
    """Every entry under the root (a damaged one too, with its problem), most recently used first.

    Example:
        >>> for entry in list_entries(cache_root()):
        ...     print(entry.key[:12], entry.what, entry.size, entry.lora())
    """
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


LIMIT_ENV = "OV_CAUSAL_CACHE_MAX_GB"


def size_limit() -> int | None:
    """The cache's size cap in bytes from $OV_CAUSAL_CACHE_MAX_GB (GiB, as ``cache list`` shows sizes), or None."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if not text:
        return None
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes >= 0:  # also refuses nan
        raise OptionError(f"{LIMIT_ENV}={text!r} is not a size: set it to a number of GiB the export cache may "
                          f"hold (e.g. {LIMIT_ENV}=20), or unset it for no cap.")
    return int(gigabytes * 2**30)


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` did: the entries it removed (least recently used first), those it left because another
    process (or a model of this one) uses them, and the cache's size before and after."""

    removed: tuple[Entry, ...]
    in_use: tuple[Entry, ...]
    before: int
    after: int

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


def _evict(root: Path, entry: Entry) -> bool:
    """Remove one entry if no process builds, compiles or uses it (all its locks free at once); False if in use.

    Only ``entries/<key>`` itself goes: a link standing there is unlinked (its target is left alone), a folder is
    removed without following any link inside it.
    """
    with all_free(root, entry_locks(entry.key)) as free:
        if free:
            remove(entry.folder)
            if entry.folder.exists() or entry.folder.is_symlink():
                raise CacheError(f"cannot remove {entry.folder} completely: this user cannot write all of it. Run "
                                 f"'ov-causal cache prune' as the cache's owner, or raise {LIMIT_ENV}.")
    return free


def prune(root: Path, max_bytes: int, keep: tuple[str, ...] = ()) -> Pruned:
    """Remove least recently used entries until the cache holds at most ``max_bytes``.

    Entries whose key is in ``keep`` (the one just built), and entries another process builds, compiles or has
    loaded (their locks, see ``cache_locks``), stay. Stale partial exports are not counted.

    Example:
        >>> prune(cache_root(), 20 * 2**30).freed
    """
    if (root / ENTRIES_DIR).is_symlink():
        raise CacheError(f"{root / ENTRIES_DIR} is a symbolic link: entries are not evicted through it (that would "
                         f"remove files outside the export cache {root}). Make it a folder, or set "
                         f"{CACHE_ENV} to the folder it points to.")
    entries = list_entries(root)
    total = before = sum(e.size for e in entries)
    removed, in_use = [], []
    for entry in reversed(entries):  # least recently used first
        if total <= max_bytes:
            break
        if entry.key in keep:
            continue
        try:
            evicted = _evict(root, entry)
        except OSError as exc:
            raise CacheError(f"cannot remove {entry.folder} ({exc.strerror}): this user cannot write the export "
                             f"cache {root}. Run as its owner, or raise {LIMIT_ENV}.") from exc
        if evicted:
            removed.append(entry)
            total -= entry.size
        else:
            in_use.append(entry)
    return Pruned(tuple(removed), tuple(in_use), before, total)


def prune_cache(max_gb: float | None = None, ov_cache_dir: str | os.PathLike[str] | None = None) -> Pruned:
    """Remove least recently used entries of the export cache until it holds at most ``max_gb`` GiB.

    Args:
        max_gb: the size to fit in, in GiB (2**30 bytes, as ``cache list`` shows sizes); None uses
            $OV_CAUSAL_CACHE_MAX_GB, the cap every new export applies.
        ov_cache_dir: the cache (default ``$OV_CAUSAL_CACHE_DIR`` or ``~/.cache/ov_causal``).

    Returns what was removed (``removed``, ``freed`` bytes), what stayed because a process uses it (``in_use``),
    and the size before and after. An entry another process builds, compiles into or has loaded is never removed.

    Example:
        >>> pruned = prune_cache(max_gb=20)
        >>> print(f"freed {pruned.freed / 2**30:.1f} GiB")
    """
    if max_gb is not None and not max_gb >= 0:
        raise OptionError(f"max_gb={max_gb!r} is not a size: give the GiB the export cache may hold, e.g. 20.")
    limit = size_limit() if max_gb is None else int(max_gb * 2**30)
    if limit is None:
        raise OptionError(f"prune_cache() needs the size to fit in: max_gb=, or {LIMIT_ENV} set (the CLI: "
                          "'ov-causal cache prune --max-gb GIB').")
    return prune(cache_root(ov_cache_dir), limit)


def describe_pruned(root: Path, pruned: Pruned, max_bytes: int) -> str:
    """One message on what ``prune`` removed and freed, and why the cache may still be over ``max_bytes``."""
    parts = []
    if pruned.removed:
        names = "; ".join(f"{e.key[:12]} {e.what} of {e.source} ({mib(e.size)})" for e in pruned.removed)
        count = len(pruned.removed)
        parts.append(f"removed {count} least recently used entr{'y' if count == 1 else 'ies'} ({mib(pruned.freed)} "
                     f"freed): {names}")
    if pruned.after > max_bytes:
        busy = f"; in use by running processes: {', '.join(e.key[:12] for e in pruned.in_use)}" if pruned.in_use else ""
        parts.append(f"still over the cap{busy}")
    done = ", ".join(parts) or "nothing to remove"
    return f"export cache {root}: {gib(pruned.before)} held, cap {gib(max_bytes)}: {done}; {gib(pruned.after)} now."


def enforce_limit(root: Path, keep: str) -> Pruned | None:
    """After an entry was built: evict least recently used entries over $OV_CAUSAL_CACHE_MAX_GB (none: no cap),
    with a warning saying which and how much was freed. ``keep``: the key just built (never evicted)."""
    limit = size_limit()
    if limit is None:
        return None
    try:
        pruned = prune(root, limit, keep=(keep,))
    except CacheError as exc:  # the entry just built is fine: say why the cap could not be applied
        warn(f"{LIMIT_ENV} is not applied: {exc}")
        return None
    if pruned.removed or pruned.after > limit:
        warn(describe_pruned(root, pruned, limit) + f" ({LIMIT_ENV} sets the cap.)")
    return pruned


def cache_table(ov_cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The export cache's entries (most recently used first) as a table: HTML in Jupyter, text with ``print``.

    Each row: key, source, preset, the LoRA adapters fused in (path and weight), size and the part of it in
    compiled blobs, last use, state; the caption gives the total and the cap ($OV_CAUSAL_CACHE_MAX_GB).
    """
    from ..ui.display import Table

    root = cache_root(ov_cache_dir)
    entries = list_entries(root)
    rows = tuple(
        (e.key[:12], e.source, e.preset, e.lora(), round(e.size / 2**20, 1), round(e.compiled / 2**20, 1),
         time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)), e.state)
        for e in entries
    )
    limit = size_limit()
    cap = f"cap {gib(limit)}" if limit is not None else f"no cap ({LIMIT_ENV})"
    return Table(("key", "source", "preset", "LoRA", "MiB", "compiled MiB", "last used", "state"), rows,
                 f"Export cache {root}: {len(entries)} entries, {gib(sum(e.size for e in entries))}, {cap}")
