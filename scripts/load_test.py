"""Load test of ``ov-causal serve``: concurrent OpenAI clients on loopback, for 1 and 2 replicas in one run.

Starts the server itself (Ray Serve, 127.0.0.1) for each replica count, sends a bounded number of
completion requests from several concurrent clients for a bounded time, and prints a markdown table:
requests/s, p50/p95 latency, generated tokens/s and failed requests.

    python scripts/load_test.py                      # the shipped demo model, 4 clients, 64 tokens, 1 and 2 replicas
    python scripts/load_test.py MODEL --replicas 1,2,4 --clients 8 --requests 400 --duration 120 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass

# Function headers the demo model (trained on Python's standard library) continues; varied so no two
# consecutive requests share a prompt.
PROMPTS = [f'def {name}(self, {arg}):\n    """{doc}"""\n' for name, arg, doc in [
    ("read_config", "path", "Read a configuration file."),
    ("parse_header", "line", "Parse one header line."),
    ("send_request", "url", "Send a request and return the response."),
    ("close", "force", "Close the connection."),
    ("format_date", "value", "Return the date as a string."),
    ("add_option", "name", "Add an option to the parser."),
    ("get_item", "key", "Return the item stored under key."),
    ("write_bytes", "data", "Write data to the stream."),
]]


@dataclass(frozen=True)
class Row:
    replicas: int
    clients: int
    requests: int
    failed: int
    seconds: float
    requests_per_s: float
    p50_s: float
    p95_s: float
    tokens_per_s: float
    mean_tokens: float


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def _drive(url: str, model: str, clients: int, requests: int, duration: float, max_tokens: int) -> tuple:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=max(60.0, duration))
    latencies: list[float] = []
    tokens: list[int] = []
    failures: list[str] = []
    issued = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            prompt = PROMPTS[issued % len(PROMPTS)]
            issued += 1
            start = time.perf_counter()
            try:
                result = await client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens,
                                                         temperature=0)
            except Exception as exc:  # counted, not fatal: the table reports failures
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - start)
            tokens.append(result.usage.completion_tokens)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    await client.close()
    return latencies, tokens, failures, elapsed


def run_row(model: str, name: str, replicas: int, args: argparse.Namespace) -> Row:
    from ov_causal.serving.ray_serve import serve

    options = {"ov_config": {"INFERENCE_NUM_THREADS": args.threads}} if args.threads else {}
    url = serve(model, name=name, replicas=replicas, port=args.port, preset=args.preset, max_batch=args.max_batch,
                blocking=False, **options)
    # Warm-up: every replica compiles and answers once before the clock starts.
    asyncio.run(_drive(url, name, 2 * replicas, 2 * replicas, 120.0, 8))
    latencies, tokens, failures, elapsed = asyncio.run(
        _drive(url, name, args.clients, args.requests, args.duration, args.max_tokens)
    )
    for failure in sorted(set(failures))[:5]:
        print(f"  failure ({failures.count(failure)}x): {failure}")
    done = len(latencies)
    return Row(replicas, args.clients, done + len(failures), len(failures), round(elapsed, 2),
               round(done / elapsed, 2), round(_percentile(latencies, 50), 3), round(_percentile(latencies, 95), 3),
               round(sum(tokens) / elapsed, 1), round(sum(tokens) / done, 1) if done else 0.0)


def table(rows: list[Row]) -> str:
    lines = ["| replicas | clients | requests | failed | seconds | requests/s | p50 latency (s) | p95 latency (s) "
             "| generated tokens/s | tokens/request |", "|" + "---:|" * 10]
    for r in rows:
        lines.append(f"| {r.replicas} | {r.clients} | {r.requests} | {r.failed} | {r.seconds} | {r.requests_per_s} "
                     f"| {r.p50_s} | {r.p95_s} | {r.tokens_per_s} | {r.mean_tokens} |")
    return "\n".join(lines)


def main() -> None:
    from ov_causal import DEMO_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEMO_MODEL), help="default: the shipped demo model")
    parser.add_argument("--name", default="demo", help="model id sent by the clients")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts, one row each")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=200, help="at most this many requests per row")
    parser.add_argument("--duration", type=float, default=60.0, help="at most this many seconds per row")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="OpenVINO inference threads per replica")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="most waiting requests one generate() call serves (1: one request at a time)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    from ov_causal.serving.ray_serve import shutdown

    rows = []
    try:
        for replicas in (int(r) for r in args.replicas.split(",")):
            rows.append(run_row(args.model, args.name, replicas, args))
            print(f"done: {rows[-1]}", flush=True)
    finally:
        shutdown()
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"args": vars(args), "rows": [asdict(r) for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
