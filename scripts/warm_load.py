"""Warm-load time of a ~1 GB int8 export from the cache: the old sampled hash vs the new verification.

Before: every load hashed each file's size and first, middle and last MiB (``quick_hash``), so an
overwrite elsewhere went unnoticed. After: each file's full sha256 is recorded with its size, mtime
and ctime when the entry is published; a load re-hashes a file in full only when one of those
differs. Both run side by side in one process on the same warm entry (alternating, medians of
``--runs``), plus the after-scheme with every file's mtime changed (the full re-hash a load pays once
after a file is touched) and ``ov-causal cache verify``'s full re-hash alone.

    PYTHONPATH=. python scripts/warm_load.py --work /tmp/ov_causal-warm --json warm_load.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

from ov_causal import AutoModelForCausalLM
from ov_causal.convert import cache
from ov_causal.tools.bench import build_random_checkpoint

SCHEMES = ("before: sampled hash (3 MiB/file)", "after: stat, full hash on change",
           "after, files touched: full re-hash")


def legacy_check(entry: Path, legacy: dict[str, str]) -> tuple[str | None, None]:
    """The old ``verify``: size and the sampled ``quick_hash`` of every recorded file."""
    record = json.loads((entry / cache.ENTRY_FILE).read_text(encoding="utf-8"))
    for name, file_record in record["files"].items():
        path = entry / name
        if not path.is_file() or path.stat().st_size != file_record["size"]:
            return f"{name} changed", None
        if cache.quick_hash(path) != legacy[name]:
            return f"{name} was altered", None
    return None, None


def touch_all(entry: Path) -> None:
    for path in entry.rglob("*"):
        if path.is_file() and cache.COMPILED_DIR not in path.relative_to(entry).parts:
            os.utime(path)


def timed_load(checkpoint: Path, root: Path) -> float:
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, preset="int8", compile=False, ov_cache_dir=root)
    seconds = time.perf_counter() - start
    assert model.ov_cache_hit, "the warm load was not a cache hit"
    del model
    gc.collect()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/ov_causal-warm", help="checkpoint and cache live here (reused)")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    checkpoint, root = work / "ckpt", work / "cache"
    if not (checkpoint / "config.json").is_file():
        build_random_checkpoint(checkpoint, args.hidden, args.layers)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, preset="int8", compile=False, ov_cache_dir=root)
    print(f"cold load (export unless cached): {time.perf_counter() - start:.1f} s", flush=True)
    entry = Path(model.model_save_dir)
    del model
    gc.collect()
    size = sum(p.stat().st_size for p in entry.glob("openvino_model.*"))
    legacy = {name: cache.quick_hash(entry / name)
              for name in json.loads((entry / cache.ENTRY_FILE).read_text())["files"]}
    new_check = cache.check_entry
    times: dict[str, list[float]] = {s: [] for s in SCHEMES}
    for run in range(args.runs):
        order = SCHEMES if run % 2 == 0 else SCHEMES[::-1]
        for scheme in order:
            if scheme.startswith("before"):
                cache.check_entry = lambda e, full, legacy=legacy: legacy_check(e, legacy)  # type: ignore[assignment]
            else:
                cache.check_entry = new_check
                if "touched" in scheme:
                    touch_all(entry)
            times[scheme].append(timed_load(checkpoint, root))
    cache.check_entry = new_check
    full = []
    for _ in range(args.runs):
        start = time.perf_counter()
        assert cache.verify(entry, full=True) is None
        full.append(time.perf_counter() - start)
    rows = {s: statistics.median(t) for s, t in times.items()}
    rows["cache verify alone (full re-hash, no load)"] = statistics.median(full)
    base = rows[SCHEMES[0]]
    print(f"\nwarm from_pretrained(preset='int8', compile=False), IR {size / 2**30:.2f} GiB, "
          f"median of {args.runs} (alternating order)\n")
    print(f"| {'scheme':48s} | seconds | vs before |\n|{'-' * 50}|---------|-----------|")
    for name, seconds in rows.items():
        print(f"| {name:48s} | {seconds:7.3f} | {seconds / base:8.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"ir_bytes": size, "runs": times, "medians": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
