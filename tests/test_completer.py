"""The request layer behind the server: concurrent requests share generate() calls, with unchanged output."""

from __future__ import annotations

import threading
import time

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.completer import Completer, Sampling
from ov_causal.generation import DEMO_MODEL

PROMPTS = ["def main(", "import os\n", "class Stack:\n    def push(self", "for key, value in"]


@pytest.fixture(scope="module")
def completer():
    return Completer(AutoModelForCausalLM.from_pretrained(DEMO_MODEL, runtime="accuracy"), "demo")


def _concurrently(completer, sampling, prompts):
    """Start one thread per prompt while the model is busy, so they all wait for the same next call."""
    results: dict[int, object] = {}

    def ask(i: int, prompt: str) -> None:
        try:
            results[i] = completer.complete(completer.encode_text(prompt), sampling)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results[i] = exc

    with completer._lock:  # a generate() call in progress
        threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(prompts)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(completer._waiting) < len(prompts) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    return [results[i] for i in range(len(prompts))]


def test_waiting_requests_share_one_call_with_the_same_output(completer):
    greedy = Sampling(max_tokens=12, temperature=0)
    alone = [completer.complete(completer.encode_text(p), greedy)[0] for p in PROMPTS]
    before = len(completer.batch_sizes)
    shared = [r[0] for r in _concurrently(completer, greedy, PROMPTS)]
    assert completer.batch_sizes[before:] == [len(PROMPTS)]
    assert shared == alone and all(o.tokens == 12 and o.finish_reason == "length" for o in shared)
    assert completer.model.last_engine == "genai"


def test_only_requests_with_the_same_settings_share_a_call(completer):
    short, long = Sampling(max_tokens=4, temperature=0), Sampling(max_tokens=9, temperature=0)
    before = len(completer.batch_sizes)
    results: list = []
    first = threading.Thread(target=lambda: results.append(_concurrently(completer, short, PROMPTS[:2])))
    first.start()
    first.join()
    seeded = Sampling(max_tokens=4, temperature=0.8, seed=7)  # a seeded request runs alone, reproducibly
    again = [completer.complete(completer.encode_text(PROMPTS[0]), seeded)[0] for _ in range(2)]
    assert again[0] == again[1]
    mixed = _concurrently(completer, long, PROMPTS[2:])
    assert [o[0].tokens for o in results[0]] == [4, 4] and [o[0].tokens for o in mixed] == [9, 9]
    assert completer.batch_sizes[before:] == [2, 2]


def test_an_error_reaches_every_request_of_the_call(completer, monkeypatch):
    from ov_causal import OptionError
    from ov_causal.completer import APIError

    def refuse(*args, **kwargs):
        raise OptionError("refused")

    monkeypatch.setattr(completer.model, "generate", refuse)
    results = _concurrently(completer, Sampling(max_tokens=3, temperature=0), PROMPTS[:3])
    assert all(isinstance(r, APIError) and r.status == 400 and "refused" in r.message for r in results)
    assert not completer._waiting


def test_a_stream_closed_early_stops_the_generation(completer, monkeypatch):
    generated: list[int] = []
    real = completer.model.generate

    def recording(*args, **kwargs):
        output = real(*args, **kwargs)
        generated.append(output.shape[1] - args[0].shape[1])
        return output

    monkeypatch.setattr(completer.model, "generate", recording)
    prompt = completer.encode_text("def main(")
    pieces = completer.stream(prompt, Sampling(max_tokens=400, temperature=0))
    assert isinstance(next(pieces), str)
    pieces.close()  # what the server does when the client disconnects
    assert completer._lock.acquire(timeout=60)
    completer._lock.release()
    assert completer.model.last_engine == "genai" and generated and generated[0] < 400
    assert [o.tokens for o in completer.complete(prompt, Sampling(max_tokens=5, temperature=0))] == [5]
