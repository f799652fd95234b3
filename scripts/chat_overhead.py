"""Plain chat latency (no tools) of two ov_causal checkouts, side by side: did a change slow chat down?

    python scripts/chat_overhead.py FOLDER BEFORE_CHECKOUT AFTER_CHECKOUT [--rounds 30]

Starts ``ov-causal serve FOLDER --no-ray`` from each checkout (``PYTHONPATH``), then sends the same chat request
(greedy, 16 tokens) to each in turn, ``rounds`` times, and prints the median latency of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

BODY = {"model": "m", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16,
        "temperature": 0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(folder: str, checkout: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": checkout}
    process = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", folder, "--no-ray", "--name", "m",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server from {checkout} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    servers = {name: start(args.folder, path) for name, path in (("before", args.before), ("after", args.after))}
    times: dict[str, list[float]] = {name: [] for name in servers}
    texts: dict[str, set[str]] = {name: set() for name in servers}
    try:
        for _ in range(args.rounds + 2):  # the first two rounds warm up
            for name, (_, url) in servers.items():
                began = time.perf_counter()
                answer = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=120).json()
                times[name].append(time.perf_counter() - began)
                texts[name].add(answer["choices"][0]["message"]["content"])
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    median = {name: statistics.median(t[2:]) * 1000 for name, t in times.items()}
    print(f"| checkout | median ms ({args.rounds} requests) |\n|---|---|")
    for name in servers:
        print(f"| {name} | {median[name]:.1f} |")
    print(f"after/before: {median['after'] / median['before']:.3f}; same answers: {texts['before'] == texts['after']}")


if __name__ == "__main__":
    main()
