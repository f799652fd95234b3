"""Cached load with and without OpenVINO's compiled blob (``CACHE_DIR``), per engine and preset, side by side.

For each preset the checkpoint's export-cache entry is built first if missing (``from_pretrained``). Then fresh
child processes, in alternating order, time:

- ``genai``: ``openvino_genai.LLMPipeline(entry, "CPU", **properties)`` (the engine ``generate`` uses) with
  the entry's ``compiled/`` as ``CACHE_DIR``, and without it;
- ``optimum``: ``model.compile()`` of the transformers loop (forward, logits, ``eval``) with a warm blob in
  ``CACHE_DIR``, and without one.

The properties are those ``from_pretrained`` gives the entry (its runtime preset). One warm-up run per mode is
discarded (it writes the blob). Prints medians and the blob sizes beside the IR, and writes JSON.

    PYTHONPATH=. python scripts/compiled_blobs.py --runs 5 --json compiled_blobs.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
checkpoint, preset, cache, engine, blob = sys.argv[1:6]
from ov_causal.model.plan import plan_load
plan = plan_load(checkpoint, preset=preset, ov_cache_dir=cache)
assert plan.folder is not None, plan.reason
properties = {k: v for k, v in plan.properties.items() if k != "CACHE_DIR"}
compiled = Path(cache) / "blobs" / plan.folder.name / engine  # one folder per engine: no blob of the other counts
if blob == "1":
    properties["CACHE_DIR"] = str(compiled)
if engine == "genai":
    import openvino_genai
    start = time.perf_counter()
    openvino_genai.LLMPipeline(str(plan.folder), "CPU", **properties)
    seconds = time.perf_counter() - start
else:
    from ov_causal import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(checkpoint, preset=preset, ov_cache_dir=cache, compile=False,
                                                 backend="optimum", ov_config=properties)
    model.ov_config.pop("CACHE_DIR", None)
    if blob == "1":
        model.ov_config["CACHE_DIR"] = str(compiled)
    start = time.perf_counter()
    model.compile()
    seconds = time.perf_counter() - start
blobs = sum(p.stat().st_size for p in compiled.glob("*")) if blob == "1" and compiled.is_dir() else 0
ir = sum(p.stat().st_size for p in plan.folder.glob("openvino_model.*"))
print(json.dumps({"seconds": seconds, "blob_bytes": blobs, "ir_bytes": ir}))
"""

MODES = (("genai", "1"), ("genai", "0"), ("optimum", "1"), ("optimum", "0"))


def child(args: argparse.Namespace, preset: str, engine: str, blob: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", CHILD, args.checkpoint, preset, args.cache, engine, blob],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_entry(args: argparse.Namespace, preset: str) -> None:
    from ov_causal import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(args.checkpoint, preset=preset, ov_cache_dir=args.cache, compile=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="/root/.cache/ov_causal-tests/smollm2-135m-instruct-v1")
    parser.add_argument("--presets", default="fp32,int8,int4_sym_g128")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ov_causal-blobs-cache"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {}
    for preset in args.presets.split(","):
        ensure_entry(args, preset)
        times: dict[str, list[float]] = {f"{e}{'+blob' if b == '1' else ''}": [] for e, b in MODES}
        sizes = {}
        for engine, blob in MODES:  # warm-up: writes the blobs
            result = child(args, preset, engine, blob)
            if blob == "1":
                sizes[engine] = result
        for run in range(args.runs):
            for engine, blob in MODES if run % 2 == 0 else MODES[::-1]:
                times[f"{engine}{'+blob' if blob == '1' else ''}"].append(child(args, preset, engine, blob)["seconds"])
        results[preset] = {
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "runs": times,
            "ir_mib": sizes["genai"]["ir_bytes"] / 2**20,
            "blob_mib": {e: sizes[e]["blob_bytes"] / 2**20 for e in ("genai", "optimum")},
        }
        row = results[preset]
        print(f"{preset:14s} IR {row['ir_mib']:7.1f} MiB  " + "  ".join(
            f"{k} {v:5.2f} s" for k, v in row["median_s"].items())
            + f"  blobs: genai {row['blob_mib']['genai']:.0f} MiB, optimum {row['blob_mib']['optimum']:.0f} MiB",
            flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
