"""What logprobs cost the requests that do not ask for them, measured side by side on one export folder.

1. Plain chat requests (no logprobs, greedy, ``--tokens`` new tokens) against two single-process servers started
   as subprocesses, one on this tree's code and one on ``--before`` (another checkout: the code without logprobs),
   requests alternating between them: median latency of each and their ratio.
2. The same plain requests on this tree's server idle, and while another client scores a ``--score-tokens``-token
   prompt in a loop (``echo: true, logprobs: 5, max_tokens: 0``): median latency of each, and scored tokens/s.

    python scripts/logprobs_latency.py FOLDER --before /work/main --rounds 15 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]


def start(code: Path, folder: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(code)}
    process = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", folder, "--no-ray", "--port", str(port),
                                "--name", "m"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server on port {port} did not start")


def chat(port: int, tokens: int) -> float:
    begin = time.perf_counter()
    response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=300, json={
        "model": "m", "messages": MESSAGES, "max_tokens": tokens, "temperature": 0})
    response.raise_for_status()
    return time.perf_counter() - begin


def score_loop(port: int, prompt: list[int], stop: threading.Event, counts: list[float]) -> None:
    while not stop.is_set():
        begin = time.perf_counter()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=300, json={
            "model": "m", "prompt": prompt, "echo": True, "logprobs": 5, "max_tokens": 0})
        response.raise_for_status()
        counts.append(len(prompt) / (time.perf_counter() - begin))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before logprobs")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--score-tokens", type=int, default=512)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    servers = {"before": start(args.before, args.folder, 18931), "after": start(HERE, args.folder, 18932)}
    ports = {"before": 18931, "after": 18932}
    try:
        for name in ports:  # warm-up
            chat(ports[name], args.tokens)
        plain: dict[str, list[float]] = {name: [] for name in ports}
        for round_ in range(args.rounds):
            for name in (("before", "after") if round_ % 2 else ("after", "before")):  # neither always goes first
                plain[name].append(chat(ports[name], args.tokens))
        servers.pop("before").terminate()
        idle, busy, rates = [], [], []
        prompt = [(i * 7919) % 4000 + 100 for i in range(args.score_tokens)]
        for _ in range(args.rounds):
            idle.append(chat(ports["after"], args.tokens))
        stop = threading.Event()
        scorer = threading.Thread(target=score_loop, args=(ports["after"], prompt, stop, rates))
        scorer.start()
        time.sleep(2)
        for _ in range(args.rounds):
            busy.append(chat(ports["after"], args.tokens))
        stop.set()
        scorer.join()
    finally:
        for process in servers.values():
            process.terminate()
    result = {
        "plain_before_ms": 1000 * statistics.median(plain["before"]),
        "plain_after_ms": 1000 * statistics.median(plain["after"]),
        "idle_ms": 1000 * statistics.median(idle), "while_scoring_ms": 1000 * statistics.median(busy),
        "scored_tokens_per_s": statistics.median(rates) if rates else float("nan"),
        "rounds": args.rounds, "tokens": args.tokens, "score_tokens": args.score_tokens,
    }
    result["after_over_before"] = result["plain_after_ms"] / result["plain_before_ms"]
    result["scoring_over_idle"] = result["while_scoring_ms"] / result["idle_ms"]
    print(f"{'measure':<36}{'median':>12}")
    for key, value in result.items():
        print(f"{key:<36}{value:>12.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
