"""``ov-causal cache``: list, inspect, verify, prune or clear the export cache (``ov_causal.convert.cache``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert.cache import cache_root
from ..convert.cache_entries import (
    HEADER,
    LIMIT_ENV,
    clear,
    describe_pruned,
    gib,
    list_entries,
    mib,
    parse_age,
    prune_cache,
    size_limit,
    verify_cache,
)
from ..convert.integrity import ENTRY_FILE
from ..errors import OptionError
from .common import EXIT_DAMAGED, EXIT_ERROR, EXIT_OK, Subparsers, command


def add_parser(sub: Subparsers) -> None:
    """Add ``cache`` and its flags."""
    cache = command(sub, "cache", "list, inspect, prune or clear the export cache", run, check)
    cache.add_argument("action", choices=["list", "info", "clear", "prune", "verify"],
                       help="list: every entry with its size, compiled blobs, preset and LoRA adapters, and the "
                       "total; info KEY: one entry's manifest and state; clear: remove entries; prune: remove least "
                       "recently used entries until the cache fits --max-gb (entries in use stay); "
                       f"verify [KEY]: re-hash every file of the entries (exit status {EXIT_DAMAGED} if one is "
                       f"damaged, {EXIT_ERROR} if no entry has that KEY)")
    cache.add_argument("key", nargs="?", default=None,
                       help="with 'info': the entry's key, or its first characters; with 'verify': the same "
                       "(default: every entry)")
    cache.add_argument("--older-than", default=None, metavar="AGE",
                       help="with 'clear': only entries unused this long, e.g. 30d, 12h, 45m (default: every entry)")
    cache.add_argument("--max-gb", type=float, default=None, metavar="GIB",
                       help=f"with 'prune': the size to fit in, in GiB (default: ${LIMIT_ENV}, the cap every new "
                       "export applies)")
    cache.add_argument("--cache-dir", default=None, metavar="FOLDER",
                       help="cache location (default: $OV_CAUSAL_CACHE_DIR, else ~/.cache/ov_causal)")


def check(args: argparse.Namespace) -> None:
    """--max-gb goes with 'prune' only, and is a size."""
    if args.max_gb is not None and args.action != "prune":
        raise OptionError(f"--max-gb goes with 'cache prune', not 'cache {args.action}'.")
    if args.max_gb is not None and not args.max_gb >= 0:
        raise OptionError(f"--max-gb {args.max_gb:g} is not a size: give the GiB the cache may hold, e.g. --max-gb 20.")


def run(args: argparse.Namespace) -> int:
    """Do the action on the cache at --cache-dir."""
    root = cache_root(args.cache_dir)
    if args.action == "clear":
        return _clear(root, args.older_than)
    if args.action == "verify":
        return _verify(verify_cache(args.key, root), root)
    if args.action == "list":
        return _list(root)
    if args.action == "prune":
        return _prune(root, args.max_gb)
    return _info(root, args.key)


def _clear(root: Path, older_than: str | None) -> int:
    removed = clear(root, None if older_than is None else parse_age(older_than))
    print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} "
          f"({sum(e.size for e in removed) / 2**20:.1f} MiB) from {root}")
    return EXIT_OK


def _list(root: Path) -> int:
    entries = list_entries(root)
    total, compiled = sum(e.size for e in entries), sum(e.compiled for e in entries)
    limit = size_limit()
    cap = f"cap {gib(limit)} (${LIMIT_ENV})" if limit is not None else f"no cap (set ${LIMIT_ENV})"
    print(f"{len(entries)} entries in {root}")
    if entries:
        print(HEADER)
    for entry in entries:
        print(entry.row())
    print(f"total {mib(total)} ({gib(total)}), of which compiled blobs {mib(compiled)}; {cap}")
    return EXIT_OK


def _prune(root: Path, max_gb: float | None) -> int:
    if max_gb is None and size_limit() is None:
        raise OptionError(f"'cache prune' needs the size to fit in: --max-gb GIB, or ${LIMIT_ENV} set.")
    pruned = prune_cache(max_gb, root)
    print(describe_pruned(root, pruned, size_limit() if max_gb is None else int(max_gb * 2**30)))
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
