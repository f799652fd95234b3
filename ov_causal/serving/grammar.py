"""``response_format`` grammars checked before a request is admitted: compiled in a worker process, with the
engine's own grammar compiler, under a time and memory budget, and cached by format.

The engine compiles a request's grammar inside its step: a construct it cannot parse kills the step (every
request running with it), and a grammar that takes a minute to compile stalls every stream for that minute. So
the serving path compiles each new format first in ``serving.grammar_worker`` (xgrammar against the model's
vocabulary) and admits only what compiled there within ``timeout`` seconds and ``max_rss_mib`` of memory; a
worker over budget is killed and started again. Verdicts, good and bad, are cached: a format seen before costs
a dictionary look-up. Callers run ``constraint()`` off the event loop (it blocks up to the budget).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import APIError

TIMEOUT = 5.0  # seconds one new grammar may take to compile (the engine would stall all streams that long)
MAX_RSS_MIB = 2048  # the worker's memory while compiling
MAX_FORMAT_BYTES = 64 * 1024  # a response_format's JSON text
STARTUP_TIMEOUT = 60.0  # the worker starts in about a second
_POLL = 0.02


class GrammarCheck:
    """Compile ``response_format`` grammars as the engine will, in a worker process with a budget.

    Args:
        folder: the served export folder (its ``tokenizer.json`` gives the vocabulary grammars compile against).
        timeout: seconds a new grammar may take to compile; longer is a 400 (the worker is restarted).
        max_rss_mib: the worker's memory limit while compiling; more is a 400 (the worker is restarted).
        cache_size: formats whose verdicts are kept.
    """

    def __init__(self, folder: str | Path, timeout: float = TIMEOUT, max_rss_mib: int = MAX_RSS_MIB,
                 cache_size: int = 512) -> None:
        self.folder, self.timeout, self.max_rss_mib, self.cache_size = Path(folder), timeout, max_rss_mib, cache_size
        self._cache: OrderedDict[str, tuple[dict[str, str] | None, str]] = OrderedDict()
        self._lock = threading.Lock()  # one compile at a time: the worker answers in order
        self._worker: _Worker | None = None
        self.compiled = self.refused = self.restarts = 0

    def start(self) -> None:
        """Start the worker now (in the background), so the first format does not wait for its imports."""
        with self._lock:
            if self._worker is None:
                self._worker = _Worker(self.folder)

    def constraint(self, response_format: Mapping[str, Any] | None) -> dict[str, str] | None:
        """The ``StructuredOutputConfig`` keywords for ``response_format`` (None for plain text).

        Raises:
            APIError: 400 naming what the engine cannot take (a construct, the time or memory budget), or 503
                when the compiler is busy with other new formats for longer than the budget.
        """
        if response_format is None or response_format.get("type") == "text":
            return None
        key = json.dumps(response_format, ensure_ascii=False)  # key order kept: it orders the output's properties
        if len(key.encode("utf-8")) > MAX_FORMAT_BYTES:
            raise _invalid(f"is {len(key.encode('utf-8'))} bytes of JSON; the server compiles formats up to "
                           f"{MAX_FORMAT_BYTES} bytes. Send a smaller schema")
        verdict = self._cached(key)
        if verdict is None:
            if not self._lock.acquire(timeout=2 * self.timeout):
                raise APIError(503, "The server is busy compiling other response formats; retry in a moment.",
                               param="response_format", kind="server_error", code="grammar_compiler_busy")
            try:
                verdict = self._cached(key) or self._compile(key)
            finally:
                self._lock.release()
        keywords, problem = verdict
        if problem:
            raise _invalid(problem)
        return keywords

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def _cached(self, key: str) -> tuple[dict[str, str] | None, str] | None:
        verdict = self._cache.get(key)
        if verdict is not None:
            self._cache.move_to_end(key)
        return verdict

    def _compile(self, key: str) -> tuple[dict[str, str] | None, str]:
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self.restarts += 1
            self._worker = _Worker(self.folder)
        try:
            answer = self._worker.ask(key, self.timeout, self.max_rss_mib)
        except APIError:  # not started: nothing known about this format
            self._worker.stop()
            self._worker = None
            raise
        except _OverBudget as exc:
            self._worker.stop()
            self._worker = None
            self.restarts += 1
            verdict: tuple[dict[str, str] | None, str] = (None, str(exc))
        else:
            verdict = (answer.get("keywords"), "" if "keywords" in answer else str(answer.get("error")))
        self.refused += bool(verdict[1])
        self.compiled += not verdict[1]
        self._cache[key] = verdict
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return verdict


def _invalid(problem: str) -> APIError:
    return APIError(400, f"Invalid response_format: {problem.rstrip('.')}.", param="response_format",
                    code="invalid_response_format")


class _OverBudget(Exception):
    """The worker took too long or too much memory (its message is the client's)."""


class _Worker:
    """One ``grammar_worker`` process and a thread reading its answers."""

    def __init__(self, folder: Path) -> None:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ov_causal.serving.grammar_worker", str(folder)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, encoding="utf-8")
        self.answers: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self._ids = 0
        threading.Thread(target=self._read, name="ov_causal-grammar-reader", daemon=True).start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self) -> None:
        for line in self.process.stdout or ():
            answer = json.loads(line)
            if answer.get("ready"):
                self.ready.set()
            else:
                self.answers.put(answer)
        self.answers.put(None)  # the process ended

    def ask(self, key: str, timeout: float, max_rss_mib: int) -> dict[str, Any]:
        """The worker's answer for one format's JSON text, within ``timeout`` s and ``max_rss_mib`` MiB."""
        if not self.ready.wait(STARTUP_TIMEOUT) or not self.alive():
            raise APIError(503, "The server's grammar compiler did not start; retry in a moment.",
                           param="response_format", kind="server_error", code="grammar_compiler_unavailable")
        self._ids += 1
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": self._ids, "format": json.loads(key)}) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.answers.get(timeout=_POLL)
            except queue.Empty:
                answer = {}
            if answer is None:
                raise _OverBudget("could not be compiled: the grammar compiler failed on it "
                                  f"(exit code {self.process.wait()}). Simplify the schema")
            if answer.get("id") == self._ids:
                return answer
            if time.monotonic() > deadline:
                raise _OverBudget(f"takes longer than {timeout:g} s to compile for constrained generation (the "
                                  "engine would stall every request meanwhile). Simplify the schema: fewer optional "
                                  "properties (mark them required), smaller anyOf/enum lists, shallower nesting")
            if _rss_mib(self.process.pid) > max_rss_mib:
                raise _OverBudget(f"needs more than {max_rss_mib} MiB to compile for constrained generation. Simplify "
                                  "the schema: fewer optional properties, smaller anyOf/enum lists")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
