"""No single request takes the server down: grammars the engine cannot take, grammars too slow to compile, an
engine failure inside a step, a stalled engine, abandoned non-streaming requests, lists that can never fit."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from ov_causal.errors import APIError
from ov_causal.serving.grammar import GrammarCheck
from ov_causal.serving.scheduler import ServingCore

from .conftest import free_port

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from ov_causal.serving import ray_serve as serving  # noqa: E402

# Regexes Python's re accepts; the first eight kill the engine's step (xgrammar), the rest it runs.
KILLERS = [r"(?=x)abc", r"(?!a)b", r"(?<=a)b", r"(?>ab)", r"a*+", r"\bword\b", r"(?P<n>a)", r"(a)\1", r"(?i)abc",
           r"a{,3}"]
FINE = [r"[a-z]{2,5}", r"\d+", r"(?:ab)+c", r"a|b", r"[^\n]+", r"x*?y"]
PROMPT = "def parse_args(argv):\n    "
MAX_QUEUE = 8


def _schema(pattern: str) -> dict:
    return {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}, "required": ["code"]}


def _format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _optional(count: int) -> dict:
    return {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(count)}}


@pytest.fixture(scope="module")
def folder(make_export) -> Path:
    return make_export("llama")


@pytest.fixture(scope="module")
def grammars(folder):
    check = GrammarCheck(folder)
    yield check
    check.close()


def _engine_verdict(pipe, pattern: str) -> bool:
    import openvino_genai

    config = pipe.get_generation_config()
    config.max_new_tokens = 2
    config.structured_output_config = openvino_genai.StructuredOutputConfig(regex=pattern)
    try:
        pipe.generate("x", config)
    except RuntimeError:
        return False
    return True


def test_the_check_judges_patterns_as_the_engine_does(folder, grammars):
    """The same verdict as GenAI's engine for every pattern: the check uses the engine's grammar compiler."""
    import openvino_genai

    pipe = openvino_genai.LLMPipeline(str(folder), "CPU")  # LLMPipeline raises in the caller: safe to probe
    for pattern in KILLERS + FINE:
        engine = _engine_verdict(pipe, pattern)
        try:
            grammars.constraint(_format(_schema(pattern)))
            ours = True
        except APIError as exc:
            assert exc.status == 400 and ("grammar compiler" in exc.message or "invalid regex" in exc.message)
            ours = False
        assert ours == engine == (pattern in FINE), pattern


@pytest.mark.parametrize("pattern, construct", [(r"(?=x)abc", "Lookahead"), (r"\bword\b", "Word boundary"),
                                                (r"(?P<n>a)", "Group modifier")])
def test_refusals_name_the_construct(grammars, pattern, construct):
    with pytest.raises(APIError, match=construct) as info:
        grammars.constraint(_format(_schema(pattern)))
    assert info.value.status == 400 and info.value.param == "response_format"
    assert pattern in info.value.message  # the part of the pattern it stopped at


def test_a_slow_schema_is_refused_within_the_budget_and_cached(folder):
    check = GrammarCheck(folder, timeout=1.0)
    try:
        check.constraint(_format(_optional(3)))  # warm: the worker has started
        started = time.monotonic()
        with pytest.raises(APIError, match="longer than 1 s to compile") as info:
            check.constraint(_format(_optional(300)))
        assert info.value.status == 400
        assert time.monotonic() - started < 3.0
        assert check.restarts == 1  # the busy worker was killed, not left compiling
        started = time.monotonic()
        with pytest.raises(APIError, match="longer than 1 s"):
            check.constraint(_format(_optional(300)))
        assert time.monotonic() - started < 0.05  # the verdict is cached
        assert check.constraint(_format(_optional(3)))["regex"]  # a new worker answers the next format
    finally:
        check.close()


def test_memory_over_budget_is_refused(folder):
    check = GrammarCheck(folder, timeout=60, max_rss_mib=1)  # any process is over 1 MiB: a long compile is ended
    try:
        started = time.monotonic()
        with pytest.raises(APIError, match="more than 1 MiB"):
            check.constraint(_format(_optional(300)))
        assert time.monotonic() - started < 30
    finally:
        check.close()


def test_oversized_format_is_refused_before_compiling(grammars):
    with pytest.raises(APIError, match="bytes of JSON"):
        grammars.constraint(_format({"type": "object", "description": "x" * 70_000}))


# ---------------------------------------------------------------- the core survives an engine failure


def _greedy(core: ServingCore, tokens: int, regex: str | None = None):
    import openvino_genai

    config = core.generation_config()
    config.max_new_tokens, config.do_sample = tokens, False
    if regex is not None:
        config.structured_output_config = openvino_genai.StructuredOutputConfig(regex=regex)
    return config


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_engine_failure_fails_that_request_only(folder):
    """A grammar that slips past the check kills GenAI's step: that request gets 400, a request in flight
    resumes on the rebuilt engine with exactly the tokens it would have had, and the next request runs.
    (f32: in bf16 a prefill of prompt + tokens and token-by-token decoding may round a near tie differently.)"""
    core = ServingCore(folder, properties={"INFERENCE_PRECISION_HINT": "f32"})
    try:
        reference = core.submit(PROMPT, _greedy(core, 120)).result()[0].tokens
        long = core.submit(PROMPT, _greedy(core, 120))
        _wait(lambda: long.completion_tokens >= 10)
        bad = core.submit([5, 6, 7], _greedy(core, 4, regex=r"(?=x)abc"))
        with pytest.raises(APIError, match="Lookahead") as info:
            bad.result()
        assert info.value.status == 400
        assert long.result()[0].tokens == reference
        assert core.engine_failures == 1
        _wait(lambda: core.healthy)
        assert core.submit(PROMPT, _greedy(core, 8)).result()[0].tokens == reference[:8]
    finally:
        core.close()


class _Stuck:
    """A pipeline whose generate() opens the gate and then never returns (a stuck C++ step)."""

    def __init__(self, real) -> None:
        self.real, self.release = real, threading.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, prompts, configs, streamer):
        streamer.write(0)
        self.release.wait(60)
        return []


def test_the_watchdog_ends_a_stalled_engine(folder):
    stalled = threading.Event()
    core = ServingCore(folder, stall_timeout=1.0, on_stall=stalled.set)
    stuck = core.pipeline = _Stuck(core.pipeline)
    try:
        request = core.submit(PROMPT, _greedy(core, 50))
        with pytest.raises(APIError, match="stopped advancing") as info:
            request.result()
        assert info.value.status == 503 and stalled.is_set()
        assert not core.healthy
        with pytest.raises(APIError) as refused:
            core.submit(PROMPT, _greedy(core, 5))
        assert refused.value.status == 503
    finally:
        stuck.release.set()
        core.close()


# ---------------------------------------------------------------- through HTTP, single-process server


@pytest.fixture(scope="module")
def server(folder):
    port = free_port()
    url = serving.serve(str(folder), ray=False, name="tiny", port=port, max_batch=4, max_queue=MAX_QUEUE,
                        blocking=False)
    yield url.removesuffix("/v1"), port
    serving.shutdown()


def _post(base: str, path: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=timeout)


def _timed_valid(base: str) -> float:
    started = time.monotonic()
    response = _post(base, "/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def _metric(base: str, name: str) -> float:
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_killing_patterns_are_400_and_the_server_keeps_serving(server):
    base, _ = server
    idle = min(_timed_valid(base) for _ in range(3))
    for pattern in KILLERS:
        response = _post(base, "/v1/completions", {"prompt": PROMPT, "max_tokens": 8,
                                                   "response_format": _format(_schema(pattern))})
        assert response.status_code == 400, (pattern, response.text)
        assert response.json()["error"]["param"] == "response_format"
        assert httpx.get(base + "/health", timeout=10).status_code == 200
    assert _timed_valid(base) < max(5 * idle, 1.0)


def test_a_large_optional_schema_does_not_block_the_server(server):
    """300 optional properties: refused within the grammar budget; meanwhile other requests are answered."""
    base, _ = server
    answers: dict[str, httpx.Response] = {}

    def send() -> None:
        answers["big"] = _post(base, "/v1/completions",
                               {"prompt": PROMPT, "max_tokens": 8, "response_format": _format(_optional(300))})

    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    time.sleep(0.5)
    during = _timed_valid(base)  # the event loop is free while the schema compiles elsewhere
    sender.join(60)
    assert answers["big"].status_code == 400 and "to compile" in answers["big"].text
    assert time.monotonic() - started < 15
    assert during < 5


def test_abandoned_non_streaming_requests_are_cancelled(server, caplog):
    """Clients that hang up before a non-streaming answer: their requests end at the next step, KV freed."""
    base, port = server
    full = 4 * 16 * 240  # what the four requests would generate if they ran to the end (a few end early)
    body = json.dumps({"prompt": PROMPT, "max_tokens": 240, "n": 16, "temperature": 1.0, "seed": 1}).encode()
    before = _metric(base, "ov_causal_generation_tokens_total")
    sockets = []
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        sockets.append(sock)
    _wait(lambda: _metric(base, "ov_causal_running_requests") >= 1, 20)
    for sock in sockets:
        sock.close()
    _wait(lambda: _metric(base, "ov_causal_running_requests") == 0
          and _metric(base, "ov_causal_queued_requests") == 0, 10)
    assert _metric(base, "ov_causal_kv_cache_usage_ratio") == 0
    assert _metric(base, "ov_causal_generation_tokens_total") - before < full / 2
    gc.collect()
    assert "never retrieved" not in caplog.text  # the cancelled work leaves no traceback in the log


def test_a_list_longer_than_the_queue_is_400(server):
    base, _ = server
    response = _post(base, "/v1/completions", {"prompt": ["x"] * (MAX_QUEUE + 1), "max_tokens": 2})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "too_many_prompts"
    assert str(MAX_QUEUE) in response.json()["error"]["message"]


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": [{"role": "user", "content": []}]}, "messages"),
])
def test_small_refusals(server, body, param):
    base, _ = server
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    response = _post(base, path, body)
    assert response.status_code == 400, response.text
    assert param in (response.json()["error"]["param"] or "")


def test_a_stalled_single_process_server_stops_instead_of_answering_503(folder, capfd):
    from ov_causal.serving.direct import start
    from ov_causal.serving.options import ServeOptions

    options = ServeOptions(port=free_port(), name="tiny", max_batch=2, max_queue=4, max_body_bytes=1 << 20, ray=False)
    running = start(str(folder), options, {})
    running.core.stall_timeout = 1.0
    stuck = running.core.pipeline = _Stuck(running.core.pipeline)
    try:
        base = running.url.removesuffix("/v1")
        response = _post(base, "/v1/completions", {"prompt": PROMPT, "max_tokens": 50}, timeout=30)
        assert response.status_code == 503 and response.json()["error"]["code"] == "engine_stalled"
        running.thread.join(10)
        assert not running.thread.is_alive()  # the HTTP server stopped: the process can end, not answer 503
        assert "engine stopped advancing" in capfd.readouterr().err
    finally:
        stuck.release.set()
        running.stop()


def test_the_grammar_worker_stays_small(grammars):
    """The worker loads xgrammar's core without torch: it starts in seconds, not the ~560 MiB torch costs."""
    from ov_causal.serving.grammar import _rss_mib

    grammars.constraint(_format(_schema("[a-z]+")))
    assert _rss_mib(grammars._worker.process.pid) < 200
