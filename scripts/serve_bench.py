"""Benchmark of ``ov-causal serve`` on the serving core, against the engine driven directly, on loopback.

Measures, side by side in one run (medians):
  1. mixed load: a short request alone vs. sent 0.3 s into a long one; 4 concurrent streams' first pieces
     vs. a short request alone;
  2. a load test: N clients, ``max_tokens`` drawn from 8/64/256, fresh prompts, bounded by count and time:
     requests/s, generated tokens/s, p50/p95 time to first token and latency, failures; then the same
     workload on the same ``ContinuousBatchingPipeline`` driven directly in this process (the engine's limit);
  3. memory: the replica's peak RSS vs. a bare ``LLMPipeline`` on the same folder (a subprocess).

    python scripts/serve_bench.py                       # a random 246M Llama, int8 (built once under --work)
    python scripts/serve_bench.py --model FOLDER --clients 16 --requests 64 --duration 90 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

WORDS = "alpha beta gamma delta table river stone cloud paper light sound metal glass field north".split()
LENGTHS = (8, 64, 256)


def _prompt(rng: random.Random, words: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + f" {rng.random():.6f}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[94]


async def _one(client: Any, url: str, model: str, prompt: str, max_tokens: int,
               stream: bool = False) -> dict[str, float]:
    """A completion; with stream=True the time of its first piece too. Times in seconds."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    start = time.perf_counter()
    if not stream:
        response = await client.post(f"{url}/completions", json=body)
        end = time.perf_counter()
        ok = response.status_code == 200
        tokens = response.json()["usage"]["completion_tokens"] if ok else 0
        return {"ok": ok, "first": end - start, "total": end - start, "tokens": tokens,
                "failure": "" if ok else f"{response.status_code} {response.text[:200]}"}
    first, tokens = None, 0
    body.update(stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", f"{url}/completions", json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            return {"ok": False, "first": float("nan"), "total": time.perf_counter() - start, "tokens": 0,
                    "failure": f"{response.status_code} {text[:200]}"}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"ok": False, "first": float("nan"), "total": time.perf_counter() - start, "tokens": 0,
                        "failure": f"in-stream {chunk['error']['message'][:200]}"}
            if first is None and chunk.get("choices"):  # the first piece (or the end, if nothing printable came)
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"ok": True, "first": first if first is not None else float("nan"),
            "total": time.perf_counter() - start, "tokens": tokens}


async def mixed(url: str, model: str, runs: int) -> dict[str, float]:
    import httpx

    rng = random.Random(1)
    async with httpx.AsyncClient(timeout=600) as client:
        await _one(client, url, model, _prompt(rng), 4)  # warm-up
        alone = [(await _one(client, url, model, _prompt(rng), 4))["total"] for _ in range(runs)]
        during = []
        for _ in range(runs):
            long = asyncio.create_task(_one(client, url, model, _prompt(rng), 400))
            await asyncio.sleep(0.3)
            during.append((await _one(client, url, model, _prompt(rng), 4))["total"])
            await long
        firsts: list[float] = []
        for _ in range(runs):
            streams = await asyncio.gather(*(_one(client, url, model, _prompt(rng), 200, stream=True)
                                             for _ in range(4)))
            firsts.extend(s["first"] for s in streams)
    short = _median(alone)
    return {"short_alone_s": short, "short_during_long_s": _median(during),
            "short_ratio": _median(during) / short, "four_streams_first_piece_median_s": _median(firsts),
            "four_streams_first_piece_worst_s": max(firsts), "four_streams_ratio_worst": max(firsts) / short,
            "four_streams_ratio_median": _median(firsts) / short}


def _workload(requests: int, seed: int = 2) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(_prompt(rng), rng.choice(LENGTHS)) for _ in range(requests)]


def _summary(results: list[dict[str, float]], seconds: float) -> dict[str, float]:
    done = [r for r in results if r["ok"]]
    failures = sorted({str(r.get("failure")) for r in results if not r["ok"]})
    return {"requests": len(results), "failed": len(results) - len(done), "failures": failures[:5],
            "seconds": seconds,
            "requests_per_s": len(done) / seconds, "tokens_per_s": sum(r["tokens"] for r in done) / seconds,
            "ttft_p50_s": _median([r["first"] for r in done]), "ttft_p95_s": _p95([r["first"] for r in done]),
            "latency_p50_s": _median([r["total"] for r in done]), "latency_p95_s": _p95([r["total"] for r in done])}


async def load(url: str, model: str, clients: int, work: list[tuple[str, int]], duration: float) -> dict[str, float]:
    import httpx

    queue = list(reversed(work))
    results: list[dict[str, float]] = []
    deadline = time.perf_counter() + duration

    async def client_loop(client: Any) -> None:
        while queue and time.perf_counter() < deadline:
            prompt, max_tokens = queue.pop()
            results.append(await _one(client, url, model, prompt, max_tokens, stream=True))

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients * 2)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return _summary(results, seconds)


def engine_direct(folder: Path, properties: dict[str, str], clients: int, work: list[tuple[str, int]],
                  duration: float) -> dict[str, float]:
    """The same workload on a ContinuousBatchingPipeline stepped by hand in this process (no HTTP, no core)."""
    import openvino_genai

    scheduler = openvino_genai.SchedulerConfig()
    scheduler.enable_prefix_caching, scheduler.max_num_seqs = True, 16
    pipe = openvino_genai.ContinuousBatchingPipeline(str(folder), scheduler, "CPU", properties)
    pending, running, results, ids = list(reversed(work)), {}, [], 0
    start = time.perf_counter()
    deadline = start + duration
    while pending or running:
        while pending and len(running) < clients and time.perf_counter() < deadline:
            prompt, max_tokens = pending.pop()
            config = pipe.get_config()
            config.max_new_tokens, config.do_sample = max_tokens, False
            running[ids] = (pipe.add_request(ids, prompt, config), time.perf_counter(), [None, 0])
            ids += 1
        if not running:
            break
        pipe.step()
        for rid, (handle, began, seen) in list(running.items()):
            while handle.can_read():
                for output in handle.read().values():
                    seen[1] += len(output.generated_ids)
                    if seen[0] is None:
                        seen[0] = time.perf_counter() - began
            if handle.get_status() != openvino_genai.GenerationStatus.RUNNING:
                results.append({"ok": True, "first": seen[0], "total": time.perf_counter() - began,
                                "tokens": seen[1]})
                del running[rid]
    return _summary(results, time.perf_counter() - start)


def replica_peak_rss_mib() -> float:
    import ray

    names = [n for n in ray.util.list_named_actors(all_namespaces=True) if "OVCausalServer" in n["name"]]
    actor = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
    status = ray.get(actor.__ray_call__.remote(lambda _: Path("/proc/self/status").read_text()))
    return _vm_hwm(status)


def _vm_hwm(status: str) -> float:
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def bare_llm_pipeline_peak_rss_mib(folder: Path, properties: dict[str, str]) -> float:
    code = ("import json, sys, openvino_genai as g, pathlib\n"
            "pipe = g.LLMPipeline(sys.argv[1], 'CPU', **json.loads(sys.argv[2]))\n"
            "config = pipe.get_generation_config(); config.max_new_tokens = 64; config.do_sample = False\n"
            "pipe.generate('alpha beta gamma delta ' * 10, config, apply_chat_template=False)\n"
            "print(pathlib.Path('/proc/self/status').read_text())\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(properties)], check=True,
                         capture_output=True, text=True).stdout
    return _vm_hwm(out)


def _prepare(args: argparse.Namespace) -> tuple[Path, dict[str, str]]:
    from ov_causal import AutoModelForCausalLM
    from ov_causal.model.engines import tokenizers_ready
    from ov_causal.tools.bench import build_random_checkpoint

    source = Path(args.model) if args.model else args.work / f"random-{args.hidden}x{args.layers}-v{args.vocab}"
    if not args.model and not (source / "config.json").is_file():
        build_random_checkpoint(source, hidden=args.hidden, layers=args.layers, vocab=args.vocab)
    model = AutoModelForCausalLM.from_pretrained(source, preset=args.preset, compile=False)
    folder = Path(model.model_save_dir)
    tokenizers_ready(folder, model.tokenizer)
    return folder, {k: str(v) for k, v in dict(model.ov_config).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint or export folder (default: a random Llama)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=4096,
                        help="vocabulary of the random model; keep it within the demo tokenizer's, so that every "
                        "generated token prints and a stream's first piece comes with its first token")
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ov_causal_serve_bench"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds; each load test sends no new request after it")
    parser.add_argument("--runs", type=int, default=3, help="repeats of each mixed-load measurement")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from ov_causal.serving import ray_serve as serving

    folder, properties = _prepare(args)
    report: dict[str, Any] = {"folder": str(folder), "properties": properties}
    url = serving.serve(str(folder), name="bench", port=args.port, blocking=False)
    try:
        report["mixed"] = asyncio.run(mixed(url, "bench", args.runs))
        report["replica_peak_rss_mib_after_mixed"] = replica_peak_rss_mib()
        work = _workload(args.requests)
        report["server"] = asyncio.run(load(url, "bench", args.clients, work, args.duration))
        report["replica_peak_rss_mib_after_load"] = replica_peak_rss_mib()
    finally:
        serving.shutdown()
    report["engine_direct"] = engine_direct(folder, properties, args.clients, work, args.duration)
    report["bare_llm_pipeline_peak_rss_mib"] = bare_llm_pipeline_peak_rss_mib(folder, properties)
    report["server_vs_engine_tokens_per_s"] = report["server"]["tokens_per_s"] / report["engine_direct"]["tokens_per_s"]
    report["replica_vs_bare_peak_rss"] = report["replica_peak_rss_mib_after_mixed"] / \
        report["bare_llm_pipeline_peak_rss_mib"]
    _print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


def _print(report: dict[str, Any]) -> None:
    m = report["mixed"]
    print("\n| mixed load | seconds | ratio to a short request alone |\n|---|---|---|")
    print(f"| short request alone | {m['short_alone_s']:.3f} | 1.0 |")
    print(f"| short request 0.3 s into a 400-token one | {m['short_during_long_s']:.3f} | {m['short_ratio']:.2f} |")
    print(f"| 4 streams, first piece (median) | {m['four_streams_first_piece_median_s']:.3f} | "
          f"{m['four_streams_ratio_median']:.2f} |")
    print(f"| 4 streams, first piece (worst) | {m['four_streams_first_piece_worst_s']:.3f} | "
          f"{m['four_streams_ratio_worst']:.2f} |")
    print("\n| load test | requests | failed | req/s | gen tok/s | TTFT p50/p95 s | latency p50/p95 s |\n"
          "|---|---|---|---|---|---|---|")
    for key in ("server", "engine_direct"):
        r = report[key]
        print(f"| {key} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.2f} | {r['tokens_per_s']:.1f} | "
              f"{r['ttft_p50_s']:.3f} / {r['ttft_p95_s']:.3f} | {r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} |")
    print(f"\nserver / engine throughput: {report['server_vs_engine_tokens_per_s']:.2f}x")
    print(f"replica peak RSS {report['replica_peak_rss_mib_after_mixed']:.0f} MiB after the mixed load, "
          f"{report['replica_peak_rss_mib_after_load']:.0f} MiB after the load test; bare LLMPipeline "
          f"{report['bare_llm_pipeline_peak_rss_mib']:.0f} MiB ({report['replica_vs_bare_peak_rss']:.2f}x)")


if __name__ == "__main__":
    threading.current_thread().name = "serve_bench"
    main()
