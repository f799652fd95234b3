"""Benchmark of ``ov-causal serve`` on the serving core, against the engine driven directly, on loopback.

Measures, side by side in one run (medians):
  1. mixed load: a short request alone vs. sent 0.3 s into a long one; 4 concurrent streams' first pieces
     vs. a short request alone;
  2. a load test: N clients, ``max_tokens`` drawn from 8/64/256, fresh prompts, bounded by count and time:
     requests/s, generated tokens/s, p50/p95 time to first token and latency, failures; then the same
     workload on the same ``ContinuousBatchingPipeline`` driven directly in this process (the engine's limit);
  3. memory: the replica's peak RSS vs. a bare ``LLMPipeline`` on the same folder (a subprocess), after the same
     single request (a fresh replica) and after the loads;
  4. with ``--old-server REV``: the same mixed load and load test against the lock-based server of an older
     commit (its ``ov_causal`` taken with ``git archive`` and started as ``python -m ov_causal serve``).

With ``--no-ray`` the server is ``ov-causal serve --no-ray`` (one replica on uvicorn, no Ray) started as a
subprocess, so that its peak RSS and CPU time are its own; everything else is measured the same way.

    python scripts/serve_bench.py                       # a random 246M Llama, int8 (built once under --work)
    python scripts/serve_bench.py --model FOLDER --clients 16 --requests 64 --duration 90 --json out.json
    python scripts/serve_bench.py --old-server 753ed4c^1       # also the lock-based server before the core
    python scripts/serve_bench.py --no-ray --requests 48 --duration 90   # the single-process server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
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
    start, cpu = time.perf_counter(), sum(os.times()[:2])
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
    return {**_summary(results, time.perf_counter() - start), "cpu_s": {"engine": sum(os.times()[:2]) - cpu}}


def replica_peak_rss_mib() -> float:
    import ray

    names = [n for n in ray.util.list_named_actors(all_namespaces=True) if "OVCausalServer" in n["name"]]
    actor = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
    status = ray.get(actor.__ray_call__.remote(lambda _: Path("/proc/self/status").read_text()))
    return _vm_hwm(status)


def actors_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system, all threads) so far of the replica, Ray Serve's HTTP proxy and its controller."""
    import ray

    out = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = next((k for k, f in (("replica", "OVCausalServer"), ("proxy", "SERVE_PROXY"),
                                    ("controller", "SERVE_CONTROLLER")) if f in actor["name"]), None)
        if name is not None:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            out[name] = ray.get(handle.__ray_call__.remote(lambda _: sum(__import__("os").times()[:2])))
    return out


def _vm_hwm(status: str) -> float:
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


SINGLE_PROMPT, SINGLE_TOKENS = "alpha beta gamma delta " * 10, 64


async def single(url: str, model: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        response = await client.post(f"{url}/completions", json={"model": model, "prompt": SINGLE_PROMPT,
                                                                  "max_tokens": SINGLE_TOKENS, "temperature": 0})
        response.raise_for_status()


def ray_actor_floor_rss_mib() -> float:
    """Peak RSS of an empty Ray actor: what any replica costs before it loads a model."""
    import ray

    @ray.remote(num_cpus=0)
    class Empty:
        def status(self) -> str:
            return Path("/proc/self/status").read_text()

    actor = Empty.remote()
    try:
        return _vm_hwm(ray.get(actor.status.remote()))
    finally:
        ray.kill(actor)


def bare_llm_pipeline_peak_rss_mib(folder: Path, properties: dict[str, str], engine: bool = False) -> float:
    """Peak RSS of a process generating SINGLE_TOKENS for SINGLE_PROMPT with a bare ``LLMPipeline`` (or, with
    ``engine``, a bare ``ContinuousBatchingPipeline`` as the core configures it)."""
    make = ("s = g.SchedulerConfig(); s.enable_prefix_caching = True; s.max_num_seqs = 16\n"
            "pipe = g.ContinuousBatchingPipeline(sys.argv[1], s, 'CPU', json.loads(sys.argv[2]))\n"
            "config = pipe.get_config()\n") if engine else (
            "pipe = g.LLMPipeline(sys.argv[1], 'CPU', **json.loads(sys.argv[2]))\n"
            "config = pipe.get_generation_config()\n")
    run = ("pipe.generate([PROMPT], [config])\n" if engine else
           "pipe.generate(PROMPT, config, apply_chat_template=False)\n")
    code = ("import json, sys, openvino_genai as g, pathlib\n" + make +
            f"config.max_new_tokens = {SINGLE_TOKENS}; config.do_sample = False\nPROMPT = {SINGLE_PROMPT!r}\n" + run +
            "print(pathlib.Path('/proc/self/status').read_text())\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(properties)], check=True,
                         capture_output=True, text=True).stdout
    return _vm_hwm(out)


def old_server(rev: str, folder: Path, port: int, runs: int, clients: int, work: list[tuple[str, int]],
               duration: float) -> dict[str, Any]:
    """The mixed load and the load test against ``ov-causal serve`` as it was at commit ``rev``."""
    import httpx

    tree = Path(tempfile.mkdtemp(prefix="ov_causal_old_server_"))
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "ov_causal"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    log = (tree / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", str(folder), "--name", "bench",
                               "--port", str(port)], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the old server did not start; see {tree / 'server.log'}")
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        return {"rev": rev, "mixed": asyncio.run(mixed(url, "bench", runs)),
                "server": asyncio.run(load(url, "bench", clients, work, duration))}
    finally:
        server.send_signal(signal.SIGINT)  # its serve() shuts Ray Serve down on Ctrl-C
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session started above: that server and its Ray
        log.close()


APP = "fastapi,prometheus_client,ov_causal.serving.openai_api"
CORE_IMPORTS = {"core": "", "core + fastapi, uvicorn, app (--no-ray)": f"uvicorn,{APP}",
                "core + ray, fastapi, app": f"ray,{APP}", "core + ray.serve too": f"ray,ray.serve,{APP}"}


def core_peak_rss_mib(folder: Path, properties: dict[str, str], imports: str) -> float:
    """Peak RSS of a plain process running the serving core on one SINGLE_PROMPT request, after ``imports``:
    what a replica's engine costs without Ray Serve, and what each layer of imports adds."""
    code = ("import importlib, json, sys, pathlib\n"
            "[importlib.import_module(m) for m in sys.argv[3].split(',') if m]\n"
            "from ov_causal.serving.scheduler import ServingCore\n"
            "core = ServingCore(sys.argv[1], properties=json.loads(sys.argv[2]))\n"
            f"config = core.generation_config(); config.max_new_tokens = {SINGLE_TOKENS}; config.do_sample = False\n"
            f"core.submit({SINGLE_PROMPT!r}, config).result(); core.close()\n"
            "print(pathlib.Path('/proc/self/status').read_text())\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(properties), imports], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    return _vm_hwm(out)


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start; see {log}")
        try:
            if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_peak_rss_mib(pid: int) -> float:
    return _vm_hwm(Path(f"/proc/{pid}/status").read_text())


def direct_server(folder: Path, port: int, args: argparse.Namespace, report: dict[str, Any]) -> list[tuple[str, int]]:
    """``ov-causal serve --no-ray`` in a subprocess of this worktree: the same measurements as on Ray Serve."""
    repo = Path(__file__).resolve().parents[1]
    log_path = args.work / "direct_server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    server = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", str(folder), "--no-ray", "--name",
                               "bench", "--port", str(port)], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, server, log_path)
        asyncio.run(single(url, "bench"))
        report["replica_peak_rss_mib_after_one"] = _process_peak_rss_mib(server.pid)
        report["mixed"] = asyncio.run(mixed(url, "bench", args.runs))
        report["replica_peak_rss_mib_after_mixed"] = _process_peak_rss_mib(server.pid)
        work = _workload(args.requests)
        cpu = _process_cpu_s(server.pid)
        report["server"] = asyncio.run(load(url, "bench", args.clients, work, args.duration))
        report["server"]["cpu_s"] = {"replica": _process_cpu_s(server.pid) - cpu}
        report["replica_peak_rss_mib_after_load"] = _process_peak_rss_mib(server.pid)
        return work
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: serve() shuts down
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def ray_server(folder: Path, port: int, args: argparse.Namespace, report: dict[str, Any]) -> list[tuple[str, int]]:
    """``serve()`` on Ray Serve in this process; the replica measured through Ray."""
    from ov_causal.serving import ray_serve as serving

    url = serving.serve(str(folder), name="bench", port=port, blocking=False)
    try:
        asyncio.run(single(url, "bench"))  # what the bare LLMPipeline below does: one request on a fresh replica
        report["replica_peak_rss_mib_after_one"] = replica_peak_rss_mib()
        report["ray_actor_floor_rss_mib"] = ray_actor_floor_rss_mib()
        report["mixed"] = asyncio.run(mixed(url, "bench", args.runs))
        report["replica_peak_rss_mib_after_mixed"] = replica_peak_rss_mib()
        work = _workload(args.requests)
        cpu = actors_cpu_s()
        report["server"] = asyncio.run(load(url, "bench", args.clients, work, args.duration))
        report["server"]["cpu_s"] = {k: v - cpu.get(k, 0.0) for k, v in actors_cpu_s().items()}
        report["replica_peak_rss_mib_after_load"] = replica_peak_rss_mib()
        return work
    finally:
        serving.shutdown()


def _prepare(args: argparse.Namespace) -> tuple[Path, dict[str, str]]:
    from ov_causal import AutoModelForCausalLM
    from ov_causal.model.backends import tokenizers_ready
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
    parser.add_argument("--old-server", default=None, metavar="REV",
                        help="also measure the lock-based server of this git commit (e.g. 753ed4c^1)")
    parser.add_argument("--no-ray", dest="ray", action="store_false",
                        help="measure 'ov-causal serve --no-ray' (one replica in a subprocess, no Ray) instead")
    args = parser.parse_args()

    folder, properties = _prepare(args)
    report: dict[str, Any] = {"folder": str(folder), "properties": properties,
                              "server_kind": "ray_serve" if args.ray else "no_ray"}
    work = (ray_server if args.ray else direct_server)(folder, args.port, args, report)
    report["engine_direct"] = engine_direct(folder, properties, args.clients, work, args.duration)
    report["bare_llm_pipeline_peak_rss_mib"] = bare_llm_pipeline_peak_rss_mib(folder, properties)
    report["bare_engine_peak_rss_mib"] = bare_llm_pipeline_peak_rss_mib(folder, properties, engine=True)
    report["core_peak_rss_mib"] = {name: core_peak_rss_mib(folder, properties, imports)
                                   for name, imports in CORE_IMPORTS.items()}
    if args.old_server:
        report["old_server"] = old_server(args.old_server, folder, args.port + 1, args.runs, args.clients, work,
                                          args.duration)
    report["server_vs_engine_tokens_per_s"] = report["server"]["tokens_per_s"] / report["engine_direct"]["tokens_per_s"]
    bare = report["bare_llm_pipeline_peak_rss_mib"]
    report["replica_vs_bare_peak_rss_one_request"] = report["replica_peak_rss_mib_after_one"] / bare
    report["replica_vs_bare_peak_rss_after_load"] = report["replica_peak_rss_mib_after_load"] / bare
    _print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


def _print(report: dict[str, Any]) -> None:
    old = report.get("old_server")
    columns = [("server", report["mixed"])] + ([("old server", old["mixed"])] if old else [])
    print("\n| mixed load | " + " | ".join(f"{name} s | ratio" for name, _ in columns) + " |\n|---|"
          + "---|---|" * len(columns))
    for label, key, ratio in (("short request alone", "short_alone_s", None),
                              ("short request 0.3 s into a 400-token one", "short_during_long_s", "short_ratio"),
                              ("4 streams, first piece (median)", "four_streams_first_piece_median_s",
                               "four_streams_ratio_median"),
                              ("4 streams, first piece (worst)", "four_streams_first_piece_worst_s",
                               "four_streams_ratio_worst")):
        cells = [f"{m[key]:.3f} | {m[ratio] if ratio else 1.0:.2f}" for _, m in columns]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n| load test | requests | failed | req/s | gen tok/s | TTFT p50/p95 s | latency p50/p95 s |\n"
          "|---|---|---|---|---|---|---|")
    rows = [("server", report["server"]), ("engine_direct", report["engine_direct"])]
    for key, r in rows + ([("old server", old["server"])] if old else []):
        print(f"| {key} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.2f} | {r['tokens_per_s']:.1f} | "
              f"{r['ttft_p50_s']:.3f} / {r['ttft_p95_s']:.3f} | {r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} |")
    print(f"\nserver / engine throughput: {report['server_vs_engine_tokens_per_s']:.2f}x")
    for key in ("server", "engine_direct"):
        r = report[key]
        tokens = r["tokens_per_s"] * r["seconds"] / 1000
        print(f"CPU seconds per 1000 generated tokens, {key}: " + ", ".join(
            f"{name} {seconds / tokens:.1f}" for name, seconds in r.get("cpu_s", {}).items()))
    floor = report.get("ray_actor_floor_rss_mib")
    print(f"server: {report['server_kind']}; peak RSS, one {SINGLE_TOKENS}-token request on a fresh process: "
          f"replica {report['replica_peak_rss_mib_after_one']:.0f} MiB, bare LLMPipeline "
          f"{report['bare_llm_pipeline_peak_rss_mib']:.0f} MiB "
          f"({report['replica_vs_bare_peak_rss_one_request']:.2f}x), "
          f"bare ContinuousBatchingPipeline {report['bare_engine_peak_rss_mib']:.0f} MiB"
          + (f", empty Ray actor {floor:.0f} MiB" if floor is not None else ""))
    print("serving core in a plain process, one request: " + ", ".join(
        f"{name} {mib:.0f} MiB" for name, mib in report["core_peak_rss_mib"].items()))
    print(f"replica peak RSS after the mixed load {report['replica_peak_rss_mib_after_mixed']:.0f} MiB, after the "
          f"load test {report['replica_peak_rss_mib_after_load']:.0f} MiB "
          f"({report['replica_vs_bare_peak_rss_after_load']:.2f}x the bare LLMPipeline's one request)")


if __name__ == "__main__":
    threading.current_thread().name = "serve_bench"
    main()
