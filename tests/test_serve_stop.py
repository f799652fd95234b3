"""Graceful stop of ``ov-causal serve --no-ray``: SIGTERM / SIGINT with streaming and plain requests in flight."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import free_port

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from ov_causal import OptionError  # noqa: E402
from ov_causal.serving import ray_serve as serving  # noqa: E402

PROMPT = "def parse_args(argv):\n    "  # greedy on the tiny llama: runs to max_tokens without an end of sequence
WORKTREE = Path(__file__).resolve().parents[1]
STOPPING = re.compile(r"stopping: finishing (\d+|the) requests in flight, up to ([\d.]+) s; signal again to exit now")


@pytest.fixture(scope="module")
def export(make_export):
    return make_export("llama")


@dataclass
class Server:
    """An ``ov-causal serve --no-ray`` subprocess, its stderr read by a thread."""

    child: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def read_stderr(self) -> None:
        for line in self.child.stderr:
            self.lines.append(line)
            if STOPPING.search(line):
                self.stopping.set()

    def in_flight(self) -> int:
        """The count of the stopping line."""
        return int(next(m for m in map(STOPPING.search, self.lines) if m).group(1))


def _start(export: Path, *flags: str) -> Server:
    """``ov-causal serve EXPORT --port FREE --name m *flags`` (add ``--no-ray`` to ``flags`` for one process)."""
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", str(export), "--port", str(port),
                              "--name", "m", *flags], cwd=WORKTREE, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    first = child.stdout.readline()
    assert first.startswith(f"serving 'm' at http://127.0.0.1:{port}/v1"), first
    server = Server(child, f"http://127.0.0.1:{port}/v1")
    threading.Thread(target=server.read_stderr, daemon=True).start()
    return server


@dataclass
class Load:
    """Plain and streaming completions running in threads: each leaves (status, body or SSE data lines)."""

    url: str
    plain: list[tuple[int, dict]] = field(default_factory=list)
    streams: list[tuple[int, list[str]]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def body(self, stream: bool) -> dict:
        return {"model": "m", "prompt": PROMPT, "max_tokens": 200, "temperature": 0, "stream": stream}

    def send_plain(self) -> None:
        try:
            response = httpx.post(f"{self.url}/completions", json=self.body(False), timeout=120)
        except httpx.TransportError as exc:  # the connection dropped: status 0
            self.plain.append((0, {"dropped": repr(exc)}))
            return
        self.plain.append((response.status_code, response.json()))

    def send_stream(self) -> None:
        data: list[str] = []
        try:
            with httpx.stream("POST", f"{self.url}/completions", json=self.body(True), timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        data.append(line.removeprefix("data: "))
                    elif line.startswith("{"):  # refused before the status line: an error body
                        data.append(line)
        except httpx.TransportError as exc:
            self.streams.append((0, [*data, repr(exc)]))
            return
        self.streams.append((response.status_code, data))

    def start(self, count: int) -> None:
        for target in [self.send_plain, self.send_stream] * count:
            self.threads.append(threading.Thread(target=target, daemon=True))
            self.threads[-1].start()
        deadline = time.monotonic() + 60
        while self.accepted() < 2 * count:  # every request reached the core: the stop comes after
            assert time.monotonic() < deadline, "the requests did not reach the server"
            time.sleep(0.02)

    def accepted(self) -> float:
        """Requests running, waiting or answered, from /metrics."""
        text = httpx.get(self.url.removesuffix("/v1") + "/metrics", timeout=10).text
        names = ("ov_causal_running_requests ", "ov_causal_queued_requests ", 'ov_causal_requests_total{status="200"}')
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(names))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


def _stop(server: Server, sig: int = signal.SIGTERM) -> None:
    server.child.send_signal(sig)
    assert server.stopping.wait(30), "".join(server.lines)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_finishes_requests_in_flight(export, sig):
    """8 plain and 8 streaming requests (2 at a time, the rest queued): every one ends whole, then exit 0."""
    server = _start(export, "--no-ray", "--max-batch", "2", "--grace", "30")
    try:
        load = Load(server.url)
        load.start(8)
        began = time.monotonic()
        _stop(server, sig)
        time.sleep(0.3)  # the listening socket closes within uvicorn's 0.1 s tick
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{server.url}/completions", json=load.body(False), timeout=10)
        assert server.child.wait(timeout=60) == 0
        took = time.monotonic() - began
        load.join()
        assert [status for status, _ in load.plain] == [200] * 8, load.plain
        assert all(b["choices"][0]["finish_reason"] == "length" and b["usage"]["completion_tokens"] == 200
                   for _, b in load.plain)
        assert len(load.streams) == 8
        for status, data in load.streams:
            assert status == 200 and data[-1] == "[DONE]", data
            assert json.loads(data[-2])["choices"][0]["finish_reason"] == "length", data
        print(f"\n{signal.Signals(sig).name}: {server.in_flight()} requests in flight, stopped in {took:.2f} s")
        assert server.in_flight() > 0
        serving.check_port("127.0.0.1", int(server.url.split(":")[-1].split("/")[0]))  # free again
    finally:
        server.child.kill()
        server.child.wait()


def test_grace_over_ends_requests_with_an_error(export):
    """No grace for 16 requests, two running at a time (so that the stop finds most of them unfinished however
    fast the machine): the plain ones cut get a 503 error, streams an error event then [DONE], or a 503."""
    server = _start(export, "--no-ray", "--max-batch", "2", "--grace", "0")
    try:
        load = Load(server.url)
        load.start(8)
        began = time.monotonic()
        _stop(server)
        assert server.child.wait(timeout=30) == 0
        took = time.monotonic() - began
        load.join()
        assert len(load.plain) == len(load.streams) == 8
        cut = [body for status, body in load.plain if status != 200]
        assert cut and all(b["error"]["type"] == "server_error" for b in cut), load.plain
        assert {status for status, _ in load.plain} <= {200, 503}
        for status, data in load.streams:
            if status == 200:
                assert data[-1] == "[DONE]", data
                assert "error" in json.loads(data[-2]) or json.loads(data[-2])["choices"][0]["finish_reason"], data
            else:  # still waiting for its first token: refused with the status line
                assert status == 503 and json.loads(data[-1])["error"]["type"] == "server_error", data
        assert any(s != 200 or "error" in json.loads(d[-2]) for s, d in load.streams), load.streams  # some cut
        print(f"\ngrace 0 s: {server.in_flight()} in flight, {len(cut)} plain cut, stopped in {took:.2f} s")
        assert took < 10
    finally:
        server.child.kill()
        server.child.wait()


def test_second_signal_exits_at_once(export):
    server = _start(export, "--no-ray", "--max-batch", "1", "--grace", "60")
    try:
        load = Load(server.url)
        load.start(8)
        _stop(server)
        began = time.monotonic()
        server.child.send_signal(signal.SIGTERM)
        assert server.child.wait(timeout=10) == 128 + signal.SIGTERM
        assert time.monotonic() - began < 5
        load.join()
        assert any("SIGTERM again: exiting now" in line for line in server.lines), server.lines
    finally:
        server.child.kill()
        server.child.wait()


def test_grace_is_checked(export):
    for grace in (-1, float("nan"), "5"):
        with pytest.raises(OptionError, match=r"grace=.* is not valid"):
            serving.serve(str(export), ray=False, port=free_port(), grace=grace, blocking=False)


def test_ray_stop_finishes_requests_and_leaves_no_process(export):
    """Ray Serve: the same load and SIGTERM; every request ends whole, and no Ray process outlives the CLI."""
    pytest.importorskip("ray.serve")
    psutil = pytest.importorskip("psutil")
    server = _start(export, "--grace", "30")
    try:
        load = Load(server.url)
        load.start(4)
        ray_processes = psutil.Process(server.child.pid).children(recursive=True)
        assert ray_processes
        began = time.monotonic()
        _stop(server)
        assert server.child.wait(timeout=90) == 0, "".join(server.lines)
        took = time.monotonic() - began
        load.join()
        assert [status for status, _ in load.plain] == [200] * 4, load.plain
        assert all(b["usage"]["completion_tokens"] == 200 for _, b in load.plain)
        for status, data in load.streams:
            assert status == 200 and data[-1] == "[DONE]", data
            assert json.loads(data[-2])["choices"][0]["finish_reason"] == "length", data
        _, alive = psutil.wait_procs(ray_processes, timeout=10)
        assert not alive, [(p.pid, p.name()) for p in alive]
        print(f"\nRay: 8 requests in flight, stopped in {took:.2f} s, {len(ray_processes)} Ray processes ended")
    finally:
        for process in psutil.Process(server.child.pid).children(recursive=True) if server.child.poll() is None else []:
            process.kill()
        server.child.kill()
        server.child.wait()
