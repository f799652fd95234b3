"""The torch-free serving core: continuous batching with unchanged greedy output, cancellation, backpressure."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ov_causal.errors import APIError, OptionError
from ov_causal.serving.scheduler import ServingCore

PROMPTS = ["def parse_args(argv):\n    ", "import os\n", "class Stack:\n    def push(self", "for key, value in"]
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def folder(make_export) -> Path:
    from transformers import AutoTokenizer

    from ov_causal.model.backends import tokenizers_ready

    out = make_export("llama")
    assert tokenizers_ready(out, AutoTokenizer.from_pretrained(out))
    return out


@pytest.fixture(scope="module")
def core(folder):
    core = ServingCore(folder, chat_template=TEMPLATE)
    yield core
    core.close()


def _greedy(core: ServingCore, max_new_tokens: int):
    config = core.generation_config()
    config.max_new_tokens, config.do_sample = max_new_tokens, False
    return config


def _wait_idle(core: ServingCore) -> None:
    deadline = time.monotonic() + 30
    while (core.running or core.queued or core.pipeline.has_non_finished_requests()) and time.monotonic() < deadline:
        time.sleep(0.01)  # a cancelled request ends at once; GenAI drops it at its next step
    assert core.running == 0 and core.queued == 0


def test_greedy_equals_alone_and_llm_pipeline(core, folder):
    import openvino_genai

    alone = [core.submit(p, _greedy(core, 12)).result()[0] for p in PROMPTS]
    together = [core.submit(p, _greedy(core, 12)) for p in PROMPTS]  # all in the same running batch
    assert [r.result()[0] for r in together] == alone
    llm = openvino_genai.LLMPipeline(str(folder), "CPU")
    config = llm.get_generation_config()
    config.max_new_tokens, config.do_sample = 12, False
    expected = [llm.generate(p, config, apply_chat_template=False) for p in PROMPTS]
    assert [core.decode(o.tokens) for o in alone] == expected
    assert all(o.finish_reason in ("stop", "length") for o in alone)
    assert [r.prompt_tokens for r in together] == [len(core.encode(p)) for p in PROMPTS]
    assert [r.completion_tokens for r in together] == [len(o.tokens) for o in alone]


def test_a_short_request_joins_a_long_one(core):
    long = core.submit(PROMPTS[0], _greedy(core, 200))
    pieces = iter(long)
    next(pieces)  # the long one runs
    short = core.submit(PROMPTS[1], _greedy(core, 3))
    assert short.result()[0].finish_reason == "length"
    assert long.finished is None  # the short one did not wait for the long one
    assert sum(len(c.tokens) for c in pieces) + 1 == long.completion_tokens


def test_cancel_frees_the_request(core):
    request = core.submit(PROMPTS[0], _greedy(core, 240))
    chunks = iter(request)
    first = next(chunks)
    assert first.tokens and first.finish_reason is None
    request.cancel()
    rest = list(chunks)  # ends without error, soon
    assert request.error is None and request.completion_tokens < 240 and len(rest) < 239
    _wait_idle(core)
    assert not core.pipeline.has_non_finished_requests()


def test_sampling_seed_and_n(core):
    def sampled(seed: int) -> list[list[int]]:
        config = core.generation_config()
        config.max_new_tokens, config.do_sample, config.temperature = 6, True, 1.0
        config.rng_seed, config.num_return_sequences = seed, 2
        return [o.tokens for o in core.submit(PROMPTS[2], config).result()]

    first = sampled(7)
    assert len(first) == 2 and first == sampled(7) and first != sampled(8)


def test_async_iteration(core):
    async def run() -> list[int]:
        request = core.submit(PROMPTS[3], _greedy(core, 5), loop=asyncio.get_running_loop())
        return [t async for chunk in request for t in chunk.tokens]

    assert asyncio.run(run()) == core.submit(PROMPTS[3], _greedy(core, 5)).result()[0].tokens


def test_chat_template_renders_like_transformers(core, folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TEMPLATE
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "import json"}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert core.chat_template is not None and core.chat_template.render(messages) == expected
    refusing = type(core.chat_template)("{{ raise_exception('no system role') }}")
    with pytest.raises(APIError, match="no system role"):
        refusing.render(messages)


def test_full_queue_answers_429(folder):
    core = ServingCore(folder, max_running=1, max_queue=1)
    try:
        running = core.submit(PROMPTS[0], _greedy(core, 200))
        next(iter(running))
        waiting = core.submit(PROMPTS[1], _greedy(core, 2))
        with pytest.raises(APIError) as refused:
            core.submit(PROMPTS[2], _greedy(core, 2))
        assert refused.value.status == 429 and refused.value.code == "queue_full"
        running.cancel()
        assert waiting.result()[0].tokens
        _wait_idle(core)
    finally:
        core.close()


def test_a_request_larger_than_the_pool_is_refused(folder):
    core = ServingCore(folder, kv_blocks=2)
    try:
        with pytest.raises(APIError) as refused:
            core.submit(" ".join(["word"] * 200), _greedy(core, 4)).result()
        assert refused.value.status == 400 and refused.value.code == "kv_cache_exceeded"
        assert core.submit("x", _greedy(core, 2)).result()[0].tokens  # the core serves on
    finally:
        core.close()


def test_bad_options(folder):
    with pytest.raises(OptionError, match="INFERENCE_NUM_THREADS"):
        ServingCore(folder, properties={"INFERENCE_NUM_THREADS": 1})
    single = ServingCore(folder, properties={"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    try:  # the setting that runs on one thread here
        assert single.submit(PROMPTS[0], _greedy(single, 3)).result()[0].tokens
    finally:
        single.close()
    with pytest.raises(OptionError, match="one of them"):
        ServingCore(folder, kv_cache_gb=1, kv_blocks=8)
    with pytest.raises(OptionError, match="max_queue"):
        ServingCore(folder, max_queue=-1)


def test_consumers_on_many_threads(core):
    results: dict[int, list[int]] = {}

    def ask(i: int) -> None:
        results[i] = core.submit(PROMPTS[i % 4], _greedy(core, 8)).result()[0].tokens

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(results[i] == results[i % 4] for i in range(12))
    _wait_idle(core)


def test_no_torch_transformers_or_optimum(folder):
    code = (
        "import sys\n"
        "import ov_causal.serving.scheduler as sc\n"
        f"core = sc.ServingCore({str(folder)!r}, chat_template={TEMPLATE!r})\n"
        "config = core.generation_config(); config.max_new_tokens = 3\n"
        "prompt = core.chat_template.render([{'role': 'user', 'content': 'hi'}])\n"
        "assert len(core.submit(prompt, config).result()[0].tokens) >= 1\n"
        "core.close()\n"
        "loaded = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_requests_arriving_as_the_engine_empties(core):
    """Requests sent while generate() winds down join it or the next one, with unchanged greedy output."""
    import random

    expected = {p: core.submit(p, _greedy(core, 2)).result()[0].tokens for p in PROMPTS}
    rng, results = random.Random(3), []

    def ask(prompt: str, delay: float) -> None:
        time.sleep(delay)
        results.append((prompt, core.submit(prompt, _greedy(core, 2)).result()[0].tokens))

    threads = [threading.Thread(target=ask, args=(PROMPTS[i % 4], rng.uniform(0, 0.6))) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 40 and all(tokens == expected[prompt] for prompt, tokens in results)
    _wait_idle(core)


def _wait_rebuild(core, rebuilt: int) -> None:
    deadline = time.monotonic() + 30
    while core.memory.rebuilds == rebuilt and time.monotonic() < deadline:
        time.sleep(0.1)


def test_memory_comes_back_after_a_burst(folder):
    """A burst of long prompts grows GenAI's pool for good; once idle, the core rebuilds its pipeline."""
    from ov_causal.serving.memory import resident_mib

    core = ServingCore(folder, memory_slack_mib=1, max_queue=256,
                       properties={"KV_CACHE_PRECISION": "f32", "INFERENCE_PRECISION_HINT": "f32"})
    try:
        expected = core.submit(PROMPTS[0], _greedy(core, 6)).result()[0].tokens
        _wait_idle(core)
        idle, rebuilt = resident_mib(), core.memory.rebuilds  # (a slow machine may have rebuilt already)
        burst = [core.submit(" ".join(f"{i} {j}" for j in range(100)), _greedy(core, 4)) for i in range(128)]
        assert all(r.result()[0].tokens for r in burst)
        grown = resident_mib()
        assert grown > idle + 10, (idle, grown)  # ~23 MiB here: 128 prompts' KV blocks kept for prefix caching
        _wait_rebuild(core, rebuilt)
        if core.memory.rebuilds == rebuilt:  # the allocator gave the pool back by itself (seen in a long test run)
            watch = core.memory
            assert resident_mib() <= watch.baseline_mib + watch.slack_mib, (idle, grown, resident_mib())  # none due
            watch.baseline_mib = resident_mib() - 10  # memory it cannot give back: now a rebuild is due
            _wait_rebuild(core, rebuilt)
        assert core.memory.rebuilds == rebuilt + 1, (idle, grown, resident_mib())
        assert resident_mib() < idle + 0.5 * (grown - idle) + 4, (idle, grown, resident_mib())
        assert core.submit(PROMPTS[0], _greedy(core, 6)).result()[0].tokens == expected  # serving on, unchanged
    finally:
        core.close()
