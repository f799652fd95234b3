"""Soak test of ``ov-causal serve``: valid, hostile and abandoned requests for minutes, on loopback.

For each server (``--no-ray``, Ray Serve) started as a subprocess on a free loopback port: warm up, time
``--baseline`` sequential valid requests (unloaded), then for its share of ``--minutes`` run ``--concurrency``
clients mixing valid requests (completions and chat, streaming or not, 16-64 tokens, some with a JSON schema),
hostile ones (patterns the grammar compiler cannot take, a schema over the 5 s grammar budget, more prompts than
--max-queue, malformed bodies, stream_options without stream) and abandoned ones (a 400-token request closed
after 0.2 s, a stream dropped after 2 chunks), while /health is polled every second and the server's RSS sampled.
After it: the time for /metrics to show nothing running, then one valid request timed. Prints a table, writes
JSON; exits 1 when a valid request got a 5xx (or no answer) or the server died.

    python scripts/soak.py                                  # demo model, both servers, 10 minutes in all
    python scripts/soak.py --mode no-ray --minutes 2 --concurrency 4 --json soak.json
    python scripts/soak.py EXPORT_FOLDER --mode ray
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from load_test import _percentile
from serve_bench import _wait_ready
from soak_traffic import (
    BIG_SCHEMA_EVERY,
    MODEL,
    TIMEOUT,
    Result,
    abandon,
    every_valid_kind,
    hostile_body,
    send,
    valid_body,
)

REPO = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
MIX = "valid=0.6,hostile=0.25,abandoned=0.15"  # shares of the soak's requests by class
MAX_REQUESTS = 100_000  # per mode: the soak ends at its time or at this many requests
GAUGES = ("ov_causal_running_requests", "ov_causal_queued_requests", "ov_causal_kv_cache_usage_ratio",
          "ov_causal_engine_rebuilds", "process_resident_memory_bytes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, mode: str, port: int, max_queue: int, work: Path) -> tuple[subprocess.Popen, Path]:
    """``ov-causal serve`` of this worktree in its own session (so that Ray's processes can be ended with it)."""
    template = work / "chat_template.jinja"  # the demo tokenizer has none
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    log = work / f"server-{mode}.log"
    command = [sys.executable, "-m", "ov_causal", "serve", model, "--name", MODEL, "--host", "127.0.0.1",
               "--port", str(port), "--max-queue", str(max_queue), "--chat-template", str(template)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, never someone else's
    with log.open("wb") as out:
        server = subprocess.Popen(command + (["--no-ray"] if mode == "no-ray" else []), cwd=REPO,
                                  env={**env, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    return server, log


def stop_server(server: subprocess.Popen) -> None:
    """Ctrl-C (serve() then shuts down, Ray too); the whole session killed if it takes over 120 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # the session start_server() began: this server and its Ray only
    except ProcessLookupError:
        pass


def _part(pid: int, process: Any) -> str:
    line = " ".join(process.cmdline())
    for needle, name in (("grammar_worker", "grammar worker"), ("ServeReplica", "replica"),
                         ("ProxyActor", "Ray Serve proxy"), ("ServeController", "Ray Serve controller")):
        if needle in line:
            return name
    return "server process" if process.pid == pid else "Ray runtime (gcs, raylet, agents, idle workers)"


def rss_mib(pid: int) -> dict[str, float]:
    """RSS of the server process and all its descendants (Ray's too), summed by part; "total" is the tree."""
    import psutil

    root = psutil.Process(pid)
    parts: Counter[str] = Counter()
    for process in [root, *root.children(recursive=True)]:
        try:
            parts[_part(pid, process)] += process.memory_info().rss / 2**20
        except psutil.Error:  # ended while we looked
            continue
    return {"total": round(sum(parts.values()), 1), **{k: round(v, 1) for k, v in sorted(parts.items())}}


async def gauges(client: Any, root: str) -> dict[str, float]:
    text = (await client.get(f"{root}/metrics", timeout=10)).text
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            found[name] = float(value)
    return found


async def sequential(client: Any, url: str, count: int, seed: int) -> list[Result]:
    rng = random.Random(seed)
    return [await send(client, url, "valid", *valid_body(rng)) for _ in range(count)]


def parse_mix(text: str) -> dict[str, float]:
    """``valid=0.6,hostile=0.25,abandoned=0.15`` as a dict; a class left out is not sent."""
    mix = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        if name not in ("valid", "hostile", "abandoned") or not share.replace(".", "", 1).isdigit():
            raise SystemExit(f"--mix {text!r}: give class=share pairs, classes valid, hostile, abandoned.")
        mix[name] = float(share)
    return mix


async def soak(client: Any, url: str, seconds: float, concurrency: int, max_queue: int, pid: int,
               seed: int, mix: dict[str, float]) -> dict[str, Any]:
    """The mixed traffic for ``seconds``, with /health polled each second and RSS sampled each 10 s."""
    root = url.removesuffix("/v1")
    results: list[Result] = []
    health: Counter[str] = Counter()
    rss: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    last_big = [time.perf_counter() - BIG_SCHEMA_EVERY]
    started = time.perf_counter()

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() < deadline and len(results) < MAX_REQUESTS:
            klass = rng.choices(list(mix), list(mix.values()))[0]
            if klass == "valid":
                results.append(await send(client, url, klass, *valid_body(rng)))
            elif klass == "abandoned":
                results.append(await abandon(url, rng))
            else:
                big = time.perf_counter() - last_big[0] > BIG_SCHEMA_EVERY
                if big:
                    last_big[0] = time.perf_counter()
                results.append(await send(client, url, klass, *hostile_body(rng, max_queue, big)))

    async def watch() -> None:
        tick = 0
        while time.perf_counter() < deadline:
            try:
                health[str((await client.get(f"{root}/health", timeout=10)).status_code)] += 1
            except Exception as exc:  # counted by name: a health check that does not answer is the finding
                health[type(exc).__name__] += 1
            if tick % 10 == 0:
                rss.append({"s": round(time.perf_counter() - started), **rss_mib(pid)})
            tick += 1
            await asyncio.sleep(1)

    await asyncio.wait_for(asyncio.gather(watch(), *(worker(i) for i in range(concurrency))),
                           seconds + 2 * TIMEOUT)
    return {"seconds": round(time.perf_counter() - started, 1), "results": results, "health": dict(health),
            "rss_total_mib_max": max((r["total"] for r in rss), default=float("nan")), "rss_mib_samples": rss}


async def settle(client: Any, root: str, timeout: float = 60.0) -> tuple[float, dict[str, float]]:
    """Seconds until /metrics shows no running and no queued request (at most ``timeout``), and the gauges."""
    start = time.perf_counter()
    while True:
        found = await gauges(client, root)
        idle = found.get("ov_causal_running_requests") == 0 and found.get("ov_causal_queued_requests") == 0
        if idle or time.perf_counter() - start > timeout:
            return round(time.perf_counter() - start, 2), found
        await asyncio.sleep(0.5)


def _latency(results: list[Result]) -> dict[str, float]:
    seconds = [r.seconds for r in results if r.status == "200"]
    return {"count": len(seconds), "p50_s": round(_percentile(seconds, 50), 3),
            "p99_s": round(_percentile(seconds, 99), 3)}


async def _measure(url: str, args: argparse.Namespace, pid: int, seconds: float) -> dict[str, Any]:
    import httpx

    root = url.removesuffix("/v1")
    report: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=args.concurrency + 8)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        for kind, path, body in every_valid_kind():  # warm-up; the JSON schema compiled once
            await send(client, url, "valid", kind, path, body)
        report["baseline"] = _latency(await sequential(client, url, args.baseline, args.seed))
        report["rss_mib_start"] = rss_mib(pid)
        report["metrics_start"] = await gauges(client, root)
        run = await soak(client, url, seconds, args.concurrency, args.max_queue, pid, args.seed, parse_mix(args.mix))
        report["settle_s"], report["metrics_end"] = await settle(client, root)
        report["probe_after_soak"] = await send(client, url, "valid", "completion", "/completions",
                                                {"model": MODEL, "prompt": "def add(a, b):", "max_tokens": 32})
        report["health_after_soak"] = (await client.get(f"{root}/health", timeout=10)).status_code
        report["rss_mib_end"] = rss_mib(pid)
    results: list[Result] = run.pop("results")
    report.update(run)
    report["sent"] = dict(Counter(r.klass for r in results))
    report["status"] = {k: dict(Counter(r.status for r in results if r.klass == k))
                        for k in ("valid", "hostile", "abandoned")}
    report["hostile_by_kind"] = {kind: dict(Counter(r.status for r in results if r.kind == kind))
                                 for kind in sorted({r.kind for r in results if r.klass == "hostile"})}
    report["valid_soak"] = _latency([r for r in results if r.klass == "valid"])
    report["valid_failures"] = sum(r.klass == "valid" and (r.status[0] == "5" or not r.status.isdigit())
                                   for r in results)
    report["hostile_5xx"] = sum(r.klass == "hostile" and r.status.startswith("5") for r in results)
    report["probe_after_soak"] = {"status": report["probe_after_soak"].status,
                                  "seconds": round(report["probe_after_soak"].seconds, 3)}
    return report


def run_mode(model: str, mode: str, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    started = time.perf_counter()
    server, log = start_server(model, mode, port, args.max_queue, args.work)
    url = f"http://127.0.0.1:{port}/v1"
    report: dict[str, Any] = {"mode": mode, "log": str(log)}
    try:
        _wait_ready(url, server, log, timeout=900)
        report["startup_s"] = round(time.perf_counter() - started, 1)
        report["rss_mib_ready"] = rss_mib(server.pid)
        report.update(asyncio.run(_measure(url, args, server.pid, seconds)))
        report["server_alive"] = server.poll() is None
    except Exception as exc:  # reported, not raised: the other mode still runs
        report["failure"] = f"{type(exc).__name__}: {exc}"
        report["server_alive"] = server.poll() is None
    finally:
        stop_server(server)
    return report


def _cell(report: dict[str, Any], row: str) -> str:
    if "failure" in report:
        return "failed" if row == "sent" else ""
    start, end = report["rss_mib_start"], report["rss_mib_end"]
    engine = "replica" if "replica" in start else "server process"
    cells = {
        "sent": ", ".join(f"{k} {v}" for k, v in sorted(report["sent"].items())),
        "valid status": ", ".join(f"{k}: {v}" for k, v in sorted(report["status"]["valid"].items())),
        "hostile status": ", ".join(f"{k}: {v}" for k, v in sorted(report["status"]["hostile"].items())),
        "abandoned outcome": ", ".join(f"{k}: {v}" for k, v in sorted(report["status"]["abandoned"].items())),
        "valid p50 / p99 s, unloaded": f"{report['baseline']['p50_s']} / {report['baseline']['p99_s']}",
        "valid p50 / p99 s, soak": f"{report['valid_soak']['p50_s']} / {report['valid_soak']['p99_s']}",
        "p99 soak / unloaded": f"{report['valid_soak']['p99_s'] / report['baseline']['p99_s']:.1f}x",
        "RSS MiB start -> end (engine process)": f"{start[engine]:.0f} -> {end[engine]:.0f}",
        "RSS MiB start -> end (process tree)": f"{start['total']:.0f} -> {end['total']:.0f} "
                                              f"(max {report['rss_total_mib_max']:.0f})",
        "/health during soak": ", ".join(f"{k}: {v}" for k, v in sorted(report["health"].items())),
        "metrics after soak (running, queued, kv)": ", ".join(
            f"{report['metrics_end'].get(g, float('nan')):g}" for g in
            ("ov_causal_running_requests", "ov_causal_queued_requests", "ov_causal_kv_cache_usage_ratio")),
        "seconds to idle / valid request after": f"{report['settle_s']} / {report['probe_after_soak']['seconds']} "
                                                 f"({report['probe_after_soak']['status']})",
        "server alive": str(report["server_alive"]),
    }
    return cells[row]


def table(reports: list[dict[str, Any]]) -> str:
    rows = ["sent", "valid status", "hostile status", "abandoned outcome", "valid p50 / p99 s, unloaded",
            "valid p50 / p99 s, soak", "p99 soak / unloaded", "RSS MiB start -> end (engine process)",
            "RSS MiB start -> end (process tree)", "/health during soak", "metrics after soak (running, queued, kv)",
            "seconds to idle / valid request after", "server alive"]
    lines = ["| | " + " | ".join(r["mode"] for r in reports) + " |", "|---|" + "---|" * len(reports)]
    lines += [f"| {row} | " + " | ".join(_cell(r, row) for r in reports) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    from ov_causal import DEMO_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEMO_MODEL), help="default: the shipped demo model")
    parser.add_argument("--mode", choices=("no-ray", "ray", "both"), default="both")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak time in all, split between the modes")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--baseline", type=int, default=20, help="sequential valid requests timed unloaded")
    parser.add_argument("--max-queue", type=int, default=16, help="the server's --max-queue")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--mix", default=MIX, help="shares of the requests by class (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=None, help="server logs go here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the reports as JSON here")
    args = parser.parse_args()
    args.work = args.work or Path(tempfile.mkdtemp(prefix="ov_causal_soak_"))
    args.work.mkdir(parents=True, exist_ok=True)
    modes = ["no-ray", "ray"] if args.mode == "both" else [args.mode]
    reports = []
    for mode in modes:
        reports.append(run_mode(args.model, mode, 60 * args.minutes / len(modes), args))
        print(f"{mode}: {json.dumps(reports[-1])}", flush=True)
    print(table(reports))
    print("RSS (psutil): engine process = the server process (--no-ray) or the Ray Serve replica; process tree = "
          "the server and all its descendants (the grammar worker; with Ray its proxy, controller and runtime). "
          "Start = after the warm-up and the unloaded run.")
    if args.json:
        args.json.write_text(json.dumps({"args": {**vars(args), "work": str(args.work)}, "modes": reports},
                                        indent=2, default=str))
    bad = [r["mode"] for r in reports if "failure" in r or r["valid_failures"] or not r["server_alive"]]
    for mode in bad:
        print(f"FAILED: {mode}: a valid request got a 5xx or no answer, or the server failed or died", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
