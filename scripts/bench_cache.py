"""Cold load (export + compress + compile) vs warm load (from the export cache), each in a fresh process.

Builds a Llama-shaped checkpoint with random weights locally (no Hub; ~246M parameters by default),
then runs ``from_pretrained(..., preset)`` in child processes: cold runs each start from an empty
cache, warm runs reuse one filled cache. Prints medians, the cold/warm ratio and peak RSS (also
relative to the IR size on disk), and writes JSON.

    python scripts/bench_cache.py --cold-runs 3 --warm-runs 5 --json cache-bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Peak RSS from /proc (VmHWM): unlike ru_maxrss it does not carry the parent's peak over exec().
CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
start = time.perf_counter()
import torch, openvino, optimum.exporters.openvino  # what any optimum-based load pays first
from optimum.intel import OVModelForCausalLM
from transformers import AutoTokenizer
from ov_causal import AutoModelForCausalLM
imported = time.perf_counter()
rss_imports = status("VmRSS")
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], preset=sys.argv[2], ov_cache_dir=sys.argv[3])
loaded = time.perf_counter()
rss_loaded = status("VmHWM")
ids = model.tokenizer(["def main():"], return_tensors="pt")
model.generate(**ids, max_new_tokens=1, min_new_tokens=1)
first = time.perf_counter()
print(json.dumps({
    "hit": model.ov_cache_hit, "import_s": imported - start, "load_s": loaded - imported,
    "first_token_s": first - loaded, "total_s": first - start,
    "peak_rss_mib": status("VmHWM"), "rss_after_imports_mib": rss_imports, "peak_rss_after_load_mib": rss_loaded,
    "ir_mib": sum(p.stat().st_size for p in model.model_save_dir.glob("openvino_model.*")) / 2**20,
}))
"""


def build_checkpoint(out: Path, hidden: int, layers: int, vocab: int) -> Path:
    from ov_causal.tools.bench import build_random_checkpoint

    build_random_checkpoint(out, hidden, layers, vocab)
    print(f"built a random-weight Llama ({hidden} x {layers} layers) in {out}", flush=True)
    return out


def run_child(checkpoint: Path, preset: str, cache_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint), preset, str(cache_dir)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ov_causal-bench-") as tmp:
        checkpoint = build_checkpoint(Path(tmp) / "checkpoint", args.hidden, args.layers, args.vocab)
        cold = []
        for i in range(args.cold_runs):
            cold.append(run_child(checkpoint, args.preset, Path(tmp) / f"cold-{i}"))
            print(f"cold {i + 1}: {cold[-1]}", flush=True)
        warm_cache = Path(tmp) / "cold-0"
        warm = []
        for i in range(args.warm_runs):
            warm.append(run_child(checkpoint, args.preset, warm_cache))
            print(f"warm {i + 1}: {warm[-1]}", flush=True)
    assert not any(r["hit"] for r in cold) and all(r["hit"] for r in warm)

    def median(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ir = warm[0]["ir_mib"]
    summary = {
        "preset": args.preset,
        "cold_load_s": median(cold, "load_s"),
        "warm_load_s": median(warm, "load_s"),
        "cold_total_s": median(cold, "total_s"),
        "warm_total_s": median(warm, "total_s"),
        "warm_peak_rss_mib": median(warm, "peak_rss_mib"),
        "warm_rss_after_imports_mib": median(warm, "rss_after_imports_mib"),
        "warm_peak_rss_after_load_mib": median(warm, "peak_rss_after_load_mib"),
        "ir_mib": ir,
    }
    summary["load_ratio_cold_over_warm"] = summary["cold_load_s"] / summary["warm_load_s"]
    summary["total_ratio_cold_over_warm"] = summary["cold_total_s"] / summary["warm_total_s"]
    summary["warm_peak_rss_over_ir"] = summary["warm_peak_rss_mib"] / ir
    summary["warm_rss_added_by_load_over_ir"] = (
        summary["warm_peak_rss_after_load_mib"] - summary["warm_rss_after_imports_mib"]
    ) / ir
    summary["warm_rss_added_by_load_and_first_token_over_ir"] = (
        summary["warm_peak_rss_mib"] - summary["warm_rss_after_imports_mib"]
    ) / ir
    print(f"\nlibrary imports (torch, transformers, optimum, openvino): median {median(warm, 'import_s'):.2f} s")
    print(f"\n{'':34s} {'cold':>10s} {'warm':>10s} {'cold/warm':>10s}")
    print(f"{'from_pretrained, after imports (s)':34s} {summary['cold_load_s']:10.2f} {summary['warm_load_s']:10.2f} "
          f"{summary['load_ratio_cold_over_warm']:9.1f}x")
    print(f"{'process start to 1st token (s)':34s} {summary['cold_total_s']:10.2f} {summary['warm_total_s']:10.2f} "
          f"{summary['total_ratio_cold_over_warm']:9.1f}x")
    print(f"IR on disk {ir:.0f} MiB; warm peak RSS {summary['warm_peak_rss_mib']:.0f} MiB "
          f"({summary['warm_peak_rss_over_ir']:.2f}x IR), of which imports {summary['warm_rss_after_imports_mib']:.0f} "
          f"MiB; added by from_pretrained {summary['warm_rss_added_by_load_over_ir']:.2f}x IR, by load and first "
          f"token {summary['warm_rss_added_by_load_and_first_token_over_ir']:.2f}x IR")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "cold": cold, "warm": warm}, indent=2))


if __name__ == "__main__":
    main()
