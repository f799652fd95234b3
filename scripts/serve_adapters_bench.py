"""Serving LoRA adapters: a mixed load (clients alternating between two adapters and the base) vs a single-adapter
load and the base alone, on one serving core, side by side.

GenAI's continuous batching runs one adapter set at a time, so the core gives the engine to one adapter group at a
time (``serving.adapters``): a mixed load pays for the turns (a group drains before the next starts). Each load is
--clients closed-loop clients sending --requests requests each (greedy, exactly --tokens new tokens); the loads
take turns, --runs times, and the medians are printed: throughput (generated tokens/s), worst wait (longest time
from submission to the first token) and median latency.

    python scripts/serve_adapters_bench.py                 # SmolLM2-135M-Instruct (tests/smollm2.py), int8
    python scripts/serve_adapters_bench.py --slice 0.5 --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lora_cost import SMOLLM2, make_adapter  # noqa: E402

from ov_causal import AutoModelForCausalLM  # noqa: E402
from ov_causal.serving.adapters import load_adapters  # noqa: E402
from ov_causal.serving.scheduler import ServingCore  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle. Once upon a time,"


def run_load(core: ServingCore, groups: list[str | None], args: argparse.Namespace) -> dict[str, float]:
    """--clients clients, client i asking for groups[i % len(groups)], --requests requests each."""
    config = core.generation_config()
    config.max_new_tokens = config.min_new_tokens = args.tokens
    config.do_sample = False
    waits: list[float] = []
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        for _ in range(args.requests):
            request = core.submit(PROMPT, config, adapter=groups[i % len(groups)])
            request.result()
            with lock:
                waits.append(request.first_token - request.submitted)
                latencies.append(request.finished - request.submitted)
                tokens[0] += request.completion_tokens

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"tokens/s": tokens[0] / wall, "worst wait s": max(waits), "median latency s": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(SMOLLM2))
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slice", type=float, default=2.0, help="seconds a group keeps the engine while others wait")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        adapters = {name: make_adapter(Path(args.model), Path(tmp) / name, seed, rank=16, scale=0.05)
                    for seed, name in enumerate(("a", "b"))}
        base = AutoModelForCausalLM.from_pretrained(args.model, preset=args.preset, compile=False)
        folder = Path(base.model_save_dir)
        served = load_adapters(folder, [(n, str(p)) for n, p in adapters.items()])
        core = ServingCore(folder, max_running=args.clients, properties=dict(base.ov_config), adapters=served,
                           adapter_slice=args.slice)
        loads = {"base only": [None], "one adapter (a)": ["a"], "mixed a / b / base": ["a", "b", None]}
        run_load(core, ["a", None], args)  # warm-up: compile, first switches
        results: dict[str, list[dict[str, float]]] = {name: [] for name in loads}
        for _ in range(args.runs):
            for name, groups in loads.items():
                switches = core.switches
                results[name].append({**run_load(core, groups, args), "switches": core.switches - switches})
        core.close()
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for name, runs in results.items()}
    print(f"\n{args.clients} clients x {args.requests} requests, {args.tokens} new tokens each, {args.model} "
          f"({args.preset}), slice {args.slice:g} s, median of {args.runs} runs\n")
    print("| load | tokens/s | worst wait s | median latency s | group switches |")
    print("|---|---|---|---|---|")
    for name, row in medians.items():
        print(f"| {name} | {row['tokens/s']:.0f} | {row['worst wait s']:.2f} | {row['median latency s']:.2f} | "
              f"{row['switches']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "medians": medians, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
