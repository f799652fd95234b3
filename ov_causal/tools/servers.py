"""Concurrent users through each engine's OpenAI-compatible server: ``llama-server`` (when it is on the PATH)
and ours (``ov-causal serve --no-ray``, started as a subprocess with the same thread count).

Each user sends one completion at the same moment; the answer's time is until the last one has finished.
Neither server is told to ignore EOS the same way (ours has no such option), so the time is scaled to the
full count of tokens asked at the rate each server reached: ``wall * asked / generated``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import ServerError

LLAMA_SERVER = "llama-server"
WORDS = ("river stone paper light number garden window engine market silver winter orange cable forest music "
         "planet doctor letter mountain kitchen").split()
OURS = ("import json, sys\n"
        "from ov_causal.serving.ray_serve import serve\n"
        "options = json.loads(sys.argv[1])\n"
        "serve(options.pop('model'), ray=False, blocking=True, **options)\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server subprocess on loopback and the model name its clients send."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    model: str = "bench"

    def wait_ready(self, timeout: float = 900.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with status {self.process.returncode} before it served.")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ServerError(f"{self.name} did not answer /health within {timeout:.0f} s.")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_llama_server(gguf: str, threads: int, users: int, context: int) -> Server | None:
    """``llama-server`` on ``gguf`` with one slot per user, or None when it is not on the PATH."""
    binary = shutil.which(LLAMA_SERVER)
    if binary is None:
        return None
    port = free_port()
    command = [binary, "-m", gguf, "-t", str(threads), "-tb", str(threads), "-np", str(users),
               "-c", str(users * context), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Server("llama-server", process, f"http://127.0.0.1:{port}")


def start_ours(model: str, threads: int, preset: str | None = None) -> Server:
    """Our server without Ray (``serve(ray=False)``, as ``ov-causal serve --no-ray``) on ``threads`` threads."""
    port = free_port()
    options: dict[str, Any] = {"model": model, "port": port, "name": "bench",
                               "ov_config": {"INFERENCE_NUM_THREADS": str(threads)}}
    if preset is not None:
        options["preset"] = preset
    process = subprocess.Popen([sys.executable, "-c", OURS, json.dumps(options)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OV_CAUSAL_PROGRESS": "0"})
    return Server("ov-causal serve", process, f"http://127.0.0.1:{port}")


def text_prompts(count: int, words: int, seed: int) -> list[str]:
    """``count`` different prompts of ``words`` words each (the same for every server of a run)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


def _complete(server: Server, prompt: str, max_tokens: int) -> int:
    body = json.dumps({"model": server.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0})
    request = urllib.request.Request(f"{server.url}/v1/completions", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        return int(json.loads(reply.read())["usage"]["completion_tokens"])


def concurrent_users(server: Server, prompts: Sequence[str], max_tokens: int) -> float:
    """Seconds for every prompt's answer, sent all at once, scaled to ``max_tokens`` each (see the module)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        generated = sum(pool.map(lambda p: _complete(server, p, max_tokens), prompts))
    wall = time.perf_counter() - start
    return wall * len(prompts) * max_tokens / max(1, generated)
