"""``ov-causal cache``: list, inspect, verify or clear the export cache (``ov_causal.convert.cache``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert.cache import cache_root
from ..convert.cache_entries import clear, list_entries, parse_age, verify_cache
from ..convert.integrity import ENTRY_FILE
from ..errors import OptionError
from .common import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, Subparsers, command


def add_parser(sub: Subparsers) -> None:
    """Add ``cache`` and its flags."""
    cache = command(sub, "cache", "list, inspect or clear the export cache", run, check)
    cache.add_argument("action", choices=["list", "info", "clear", "verify"],
                       help="list: every entry; info KEY: one entry's manifest and state; clear: remove entries; "
                       f"verify [KEY]: re-hash every file of the entries (exit status {EXIT_DAMAGED} if one is "
                       f"damaged, {EXIT_ERROR} if no entry has that KEY)")
    cache.add_argument("key", nargs="?", default=None,
                       help="with 'info': the entry's key, or its first characters; with 'verify': the same "
                       "(default: every entry)")
    cache.add_argument("--older-than", default=None, metavar="AGE",
                       help="with 'clear': only entries unused this long, e.g. 30d, 12h, 45m (default: every entry)")
    cache.add_argument("--cache-dir", default=None, metavar="FOLDER",
                       help="cache location (default: $OV_CAUSAL_CACHE_DIR, else ~/.cache/ov_causal)")


def check(args: argparse.Namespace) -> None:
    """Nothing to check before the work: the cache holds no model names."""


def run(args: argparse.Namespace) -> int:
    """Do the action on the cache at --cache-dir."""
    root = cache_root(args.cache_dir)
    if args.action == "clear":
        return _clear(root, args.older_than)
    if args.action == "verify":
        return _verify(verify_cache(args.key, root), root)
    if args.action == "list":
        return _list(root)
    return _info(root, args.key)


def _clear(root: Path, older_than: str | None) -> int:
    removed = clear(root, None if older_than is None else parse_age(older_than))
    print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} "
          f"({sum(e.size for e in removed) / 2**20:.1f} MiB) from {root}")
    return EXIT_OK


def _list(root: Path) -> int:
    entries = list_entries(root)
    print(f"{len(entries)} entries in {root}")
    for entry in entries:
        print(entry.row())
    return EXIT_OK


def _info(root: Path, key: str | None) -> int:
    matches = [e for e in list_entries(root) if key and e.key.startswith(key)]
    if len(matches) != 1:
        raise OptionError(f"'cache info' needs the key (or its start) of one entry; {key!r} matches "
                          f"{len(matches)}. See 'ov-causal cache list'.")
    try:
        print((matches[0].folder / ENTRY_FILE).read_text())
    except OSError:
        print(f"{matches[0].folder}: no readable {ENTRY_FILE}")
    print(f"state: {'ok' if matches[0].problem is None else 'DAMAGED: ' + matches[0].problem}")
    return EXIT_OK


def _verify(results: dict[str, str | None], root: Path) -> int:
    """Print each entry's state after a full re-hash; EXIT_DAMAGED when one is damaged."""
    print(f"verified {len(results)} entr{'y' if len(results) == 1 else 'ies'} in {root} (every file re-hashed)")
    for key, problem in results.items():
        print(f"{key[:12]}  {'ok' if problem is None else 'DAMAGED: ' + problem}")
    if any(results.values()):
        print("damaged entries are rebuilt by the next load that needs them; 'ov-causal cache clear' removes all.")
        return EXIT_DAMAGED
    return EXIT_OK
