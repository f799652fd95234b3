"""Whole process start to first token: ``ov-causal generate`` on a cached export vs a bare GenAI script.

Builds a Llama-shaped checkpoint with random weights (~246M parameters by default; no Hub), exports it
once into a fresh export cache (``ov-causal generate --preset int8``), then times fresh processes side
by side, alternating their order: ``python -m ov_causal generate --model CHECKPOINT --preset int8
--max-new-tokens 1`` (recognises the cached export without importing torch) and a bare script that
loads the same folder with ``openvino_genai.LLMPipeline`` and generates one token — with the same
OpenVINO properties, with GenAI's defaults, and with the properties plus the entry's CACHE_DIR (which
LLMPipeline misses on every load here: it compiles and writes the blob again). Each time
is the wall time from spawning the process to its exit.

    python scripts/startup.py --runs 5 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "def main(argv):\n"
BARE = r"""
import json, sys
import openvino_genai
pipe = openvino_genai.LLMPipeline(sys.argv[1], "CPU", **json.loads(sys.argv[2]))
print(pipe.generate(sys.argv[3], openvino_genai.GenerationConfig(max_new_tokens=1), apply_chat_template=False))
"""
HEAVY = r"""
import sys
from ov_causal.cli import main
status = main(sys.argv[1:])
print("HEAVY", sorted(m for m in ("torch", "transformers", "optimum", "nncf") if m in sys.modules), file=sys.stderr)
sys.exit(status)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process from spawn to exit; raises if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: build a random Llama)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache-dir", default=None, help="export cache to use (default: a fresh one)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ov_causal-startup-") as tmp:
        checkpoint = Path(args.model) if args.model else Path(tmp) / "checkpoint"
        if args.model is None:
            from ov_causal.tools.bench import build_random_checkpoint

            build_random_checkpoint(checkpoint, args.hidden, args.layers, args.vocab)
        env = {**os.environ, "OV_CAUSAL_CACHE_DIR": args.cache_dir or str(Path(tmp) / "cache")}
        ours = [sys.executable, "-m", "ov_causal", "generate", PROMPT, "--model", str(checkpoint),
                "--preset", args.preset, "--max-new-tokens", "1"]
        print(f"exporting into {env['OV_CAUSAL_CACHE_DIR']} unless it is there ...", flush=True)
        timed(ours, env)
        heavy = subprocess.run([sys.executable, "-c", HEAVY, *ours[3:]], env=env, capture_output=True, text=True)
        os.environ["OV_CAUSAL_CACHE_DIR"] = env["OV_CAUSAL_CACHE_DIR"]
        from ov_causal.model.ready import find_ready

        ready = find_ready(checkpoint, args.preset)
        if ready is None:
            raise SystemExit("the export is not ready after exporting: nothing to compare")
        same = {k: v for k, v in ready.properties.items() if k != "CACHE_DIR"}  # as ov-causal generate loads it
        variants = {
            "ov-causal generate": ours,
            "bare GenAI, defaults": [sys.executable, "-c", BARE, str(ready.folder), "{}", PROMPT],
            "bare GenAI, same properties": [sys.executable, "-c", BARE, str(ready.folder), json.dumps(same), PROMPT],
            "bare GenAI, + CACHE_DIR": [sys.executable, "-c", BARE, str(ready.folder),
                                        json.dumps(ready.properties), PROMPT],
        }
        rows: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(args.runs):
            order = list(variants) if run % 2 == 0 else list(reversed(variants))
            for name in order:
                rows[name].append(timed(variants[name], env))
            print(f"run {run + 1}: " + ", ".join(f"{n} {rows[n][-1]:.2f} s" for n in variants), flush=True)

    summary = {
        name: {"median_s": statistics.median(values), "runs_s": values}
        for name, values in rows.items()
    }
    base = summary["bare GenAI, defaults"]["median_s"]
    print(f"\nprocess start to first token (max_new_tokens=1, exit included), medians of {args.runs}:")
    print(f"{'':30s} {'seconds':>8s} {'x bare':>7s}")
    for name, row in summary.items():
        print(f"{name:30s} {row['median_s']:8.2f} {row['median_s'] / base:7.2f}")
    print(f"heavy modules imported by ov-causal generate: {heavy.stderr.strip().splitlines()[-1]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "runs": args.runs, **summary}, indent=2))


if __name__ == "__main__":
    main()
