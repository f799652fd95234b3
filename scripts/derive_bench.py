"""First loads of two presets of one checkpoint from an empty export cache: this tree against a reference tree.

Each load runs in a fresh process (``from_pretrained`` with compile, then one greedy token): its wall time from
the call to the end of the load, and the CPU time of the whole process (user + system, all threads: steadier
than wall time on a shared machine). The two trees alternate round by round, each round in a fresh
``OV_CAUSAL_CACHE_DIR``.
Today's tree derives every preset from the checkpoint's cached fp32 export; a reference tree from before that
(e.g. a checkout of an older commit) exports each preset from torch again.

Usage:

    python scripts/derive_bench.py --reference /path/to/older/checkout --rounds 3 --json derive.json

The model defaults to SmolLM2-135M-Instruct (tests/smollm2.py); ``--model`` takes any checkpoint folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
CHILD = """
import sys, time
t = time.perf_counter()
from ov_causal import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], preset=sys.argv[2])
ids = model.tokenizer(["The capital of France is"], return_tensors="pt")
out = model.generate(**ids, max_new_tokens=1, do_sample=False)
seconds = time.perf_counter() - t
import hashlib  # the weights the load compiled: the same file from both trees when the IRs match
import ov_causal
print("TREE", ov_causal.__file__)
digest = hashlib.sha256((model.model_save_dir / "openvino_model.bin").read_bytes()).hexdigest()[:16]
print("LOAD", seconds, out[0, -1].item(), digest)
"""


def _checkpoint() -> Path:
    sys.path.insert(0, str(HERE / "tests"))
    from smollm2 import checkpoint

    return checkpoint()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load(tree: Path, model: Path, preset: str, cache: Path) -> tuple[float, float, str]:
    """Wall seconds of one first load in a fresh process, CPU seconds of that process, and its greedy token and
    the sha256 of its weights file."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OV_CAUSAL_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    before = _cpu_seconds()
    result = subprocess.run([sys.executable, "-c", CHILD, str(model), preset], env=env, capture_output=True,
                            text=True, timeout=3600, cwd=tree)  # python -c puts the cwd first on sys.path
    cpu = _cpu_seconds() - before
    line = [line for line in result.stdout.splitlines() if line.startswith("LOAD")]
    if f"TREE {tree}/" not in result.stdout:
        raise SystemExit(f"the load of {preset} did not run the tree {tree}:\n{result.stdout[-500:]}")
    if result.returncode or not line:
        raise SystemExit(f"the load of {preset} in {tree} failed:\n{result.stderr[-3000:]}")
    _, seconds, token, digest = line[-1].split()
    return float(seconds), cpu, f"{token} {digest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of ov_causal to compare with")
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint folder (default: SmolLM2-135M)")
    parser.add_argument("--presets", nargs=2, default=("int8", "int4_sym_g128"), metavar=("FIRST", "SECOND"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = args.model or _checkpoint()
    trees = {"this tree": HERE, "reference": args.reference.resolve()}
    times: dict[str, dict[str, list[float]]] = {name: {p: [] for p in args.presets} for name in trees}
    cpu: dict[str, dict[str, list[float]]] = {name: {p: [] for p in args.presets} for name in trees}
    tokens: dict[str, dict[str, str]] = {name: {} for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            cache = Path(tempfile.mkdtemp(prefix="derive-bench-"))
            try:
                for preset in args.presets:
                    seconds, cpu_seconds, tokens[name][preset] = load(tree, model, preset, cache)
                    times[name][preset].append(seconds)
                    cpu[name][preset].append(cpu_seconds)
                    print(f"{name:10s} {preset:16s} {seconds:7.1f} s wall {cpu_seconds:7.1f} s cpu  "
                          f"token, weights: {tokens[name][preset]}", flush=True)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rounds, first loads from an empty cache ({model.name}), wall / cpu seconds")
    first, second = args.presets
    print(f"{'tree':10s} {first + ' (1st)':>20s} {second + ' (2nd)':>24s} {'2nd / ref 2nd':>15s}")
    rows = {}
    for name in trees:
        row = {kind: [statistics.median(data[name][p]) for p in args.presets] for kind, data in
               (("wall", times), ("cpu", cpu))}
        ref = {kind: statistics.median(data["reference"][second]) for kind, data in (("wall", times), ("cpu", cpu))}
        ratio = {kind: row[kind][1] / ref[kind] for kind in row}
        rows[name] = {"wall": row["wall"], "cpu": row["cpu"], "second_over_reference_second": ratio,
                      "tokens": tokens[name]}
        print(f"{name:10s} {row['wall'][0]:8.1f} / {row['cpu'][0]:7.1f} {row['wall'][1]:12.1f} / {row['cpu'][1]:7.1f}"
              f" {ratio['wall']:7.2f} / {ratio['cpu']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"presets": args.presets, "wall": times, "cpu": cpu, "medians": rows},
                                        indent=2))

if __name__ == "__main__":
    main()
