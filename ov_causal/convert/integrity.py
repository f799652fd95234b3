"""Integrity of export-cache entries: a full sha256 per file, re-checked when a file's stat changes.

``entry.json`` records, for every file an entry publishes, its size, mtime, ctime and the sha256 of
its whole content. A check trusts a file whose three are unchanged and re-hashes it in full
otherwise: any write changes the ctime, which ``os.utime`` cannot set back, so even an overwrite
that restores size and mtime is re-hashed. ``full=True`` re-hashes everything.

Nothing else may stand in an entry: besides the recorded files there are only ``entry.json``,
``last_used`` and the ``compiled/`` blobs, all regular files. A symlink anywhere in an entry (or any
file entry.json does not list) makes it damaged: a write through it (``last_used`` on every hit,
OpenVINO's blobs) would change a file outside the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

ENTRIES_DIR = "entries"  # under the cache root: one folder per export
ENTRY_FILE = "entry.json"
COMPILED_DIR = "compiled"
USED_FILE = "last_used"


def file_sha256(path: Path) -> str:
    """sha256 of a file's whole content."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stat_record(st: os.stat_result) -> dict[str, int]:
    # ctime cannot be set by os.utime: an overwrite that restores the mtime still changes it
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Size, mtime, ctime and full sha256 of every file an entry publishes (not its compiled blobs)."""
    records = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.name not in (ENTRY_FILE, USED_FILE) and COMPILED_DIR not in relative.parts:
            digest = file_sha256(path)
            records[str(relative)] = {**stat_record(path.stat()), "sha256": digest}
    return records


def _kind_problem(name: str, st: os.stat_result) -> str | None:
    """What is wrong with a file of an entry that is not a regular file (a symlink, a FIFO...), or None."""
    if stat.S_ISLNK(st.st_mode):
        return f"{name} is a symbolic link (a write through it would change a file outside the cache)"
    if not stat.S_ISREG(st.st_mode):
        return f"{name} is not a regular file"
    return None


def _allowed_unrecorded(relative: Path) -> bool:
    """Files an entry holds besides the recorded ones: its records, its last use, compiled blobs, atomic-write
    leftovers of entry.json (``.entry.json.*.tmp``)."""
    top = relative.parts[0]
    if len(relative.parts) == 1:
        return top in (ENTRY_FILE, USED_FILE) or (top.startswith(f".{ENTRY_FILE}.") and top.endswith(".tmp"))
    return top == COMPILED_DIR


def unrecorded_problem(entry: Path, recorded: set[str]) -> str | None:
    """What in ``entry`` is neither a recorded file nor one it may hold (a symlink, a stray file), or None."""
    for folder, dirs, names in os.walk(entry):
        base = Path(folder)
        for name in dirs + names:
            relative = (base / name).relative_to(entry)
            try:
                st = (base / name).lstat()
            except FileNotFoundError:  # e.g. a compiled blob OpenVINO replaced meanwhile
                continue
            if name in dirs and not stat.S_ISLNK(st.st_mode):
                continue  # a real folder: its files are looked at in turn
            if str(relative) in recorded:
                continue  # checked against its record
            problem = _kind_problem(str(relative), st)
            if problem is not None:
                return problem
            if not _allowed_unrecorded(relative):
                return f"{relative} is not recorded in {ENTRY_FILE}"
    return None


def _check_file(path: Path, name: str, record: dict[str, Any], full: bool) -> tuple[str | None, bool]:
    """(what is wrong with one recorded file or None, whether it was re-hashed)."""
    try:
        st = path.lstat()
    except OSError:
        return f"{name} is missing", False
    kind = _kind_problem(name, st)
    if kind is not None:
        return kind, False
    if "sha256" not in record:
        return f"{name} was recorded by an older ov_causal (sampled hash only)", False
    if st.st_size != record["size"]:
        return f"{name} has {st.st_size} bytes instead of {record['size']}", False
    if not full and stat_record(st) == {k: record.get(k) for k in ("size", "mtime_ns", "ctime_ns")}:
        return None, False  # untouched since it was hashed
    if file_sha256(path) != record["sha256"]:
        return f"{name} was altered (its content no longer matches the sha256 recorded when it was written)", True
    return None, True


def check_entry(entry: Path, full: bool) -> tuple[str | None, dict[str, Any] | None]:
    """(problem or None, the entry record with refreshed file times when files were re-hashed and intact)."""
    if not entry.is_dir() or entry.is_symlink():
        return "it is not a folder", None
    try:
        record = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, dict) or not all(isinstance(r, dict) for r in files.values()):
            raise ValueError(f"{ENTRY_FILE} lists no files")
    except (OSError, ValueError, KeyError, TypeError):
        return f"{ENTRY_FILE} is missing or unreadable", None
    stray = unrecorded_problem(entry, set(files))
    if stray is not None:
        return stray, None
    rehashed = False
    for name, file_record in files.items():
        problem, hashed = _check_file(entry / name, name, file_record, full)
        if problem is not None:
            return problem, None
        if hashed:
            file_record.update(stat_record((entry / name).stat()))
            rehashed = True
    return None, record if rehashed else None


def verify(entry: Path, full: bool = False) -> str | None:
    """None when the entry is intact, else what is wrong with it.

    Every file is re-hashed in full when its size, mtime or ctime differ from those recorded with
    its hash (any write changes the ctime, even one that restores the mtime); ``full=True`` re-hashes
    every file regardless.
    """
    return check_entry(entry, full)[0]


def verify_entries(root: Path, key: str | None = None) -> dict[str, str | None]:
    """Re-hash every file of every entry (or of those whose key starts with ``key``): {key: problem or None}.

    Example:
        >>> verify_entries(cache_root())
        {'3f2a...': None}
    """
    entries = root / ENTRIES_DIR
    folders = sorted(p for p in entries.glob("*") if not p.name.startswith(".")) if entries.is_dir() else []
    return {p.name: verify(p, full=True) for p in folders if key is None or p.name.startswith(key)}
