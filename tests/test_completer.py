"""The request layer behind the server, on the serving core: OpenAI settings -> GenAI settings -> text."""

from __future__ import annotations

import asyncio

import pytest

from ov_causal.errors import APIError
from ov_causal.serving.completer import Completer, Sampling
from ov_causal.serving.scheduler import ServingCore

PROMPT = "def parse_args(argv):\n    "


@pytest.fixture(scope="module")
def completer(make_export):
    from transformers import AutoTokenizer

    from ov_causal.model.backends import tokenizers_ready

    folder = make_export("llama")
    tokenizers_ready(folder, AutoTokenizer.from_pretrained(folder))
    core = ServingCore(folder)
    yield Completer(core, "tiny")
    core.close()


def _stream(completer: Completer, sampling: Sampling) -> list:
    async def run() -> list:
        request = completer.submit(completer.encode_text(PROMPT), sampling, 16, asyncio.get_running_loop())
        return [item async for item in completer.stream(request, sampling)]

    return asyncio.run(run())


def test_stream_equals_complete(completer):
    greedy = Sampling(max_tokens=16, temperature=0)
    plain = completer.complete(completer.encode_text(PROMPT), greedy)[0]
    items = _stream(completer, greedy)
    assert "".join(i for i in items if isinstance(i, str)) == plain.text
    assert items[-1] == plain


def test_stop_strings_cut_plain_and_streamed_text(completer):
    text = completer.complete(completer.encode_text(PROMPT), Sampling(max_tokens=16, temperature=0))[0].text
    stop = text.strip()[3:6]
    assert stop, text
    cut = Sampling(max_tokens=16, temperature=0, stop=(stop,))
    plain = completer.complete(completer.encode_text(PROMPT), cut)[0]
    assert plain.text == text[: text.index(stop)] and plain.finish_reason == "stop"
    items = _stream(completer, cut)
    assert "".join(i for i in items if isinstance(i, str)) == plain.text and items[-1].finish_reason == "stop"


def test_n_and_seed(completer):
    sampled = Sampling(max_tokens=8, temperature=1.0, n=3, seed=2**63 - 1)
    first = completer.complete(completer.encode_text(PROMPT), sampled)
    assert len(first) == 3 and first == completer.complete(completer.encode_text(PROMPT), sampled)
    negative = Sampling(max_tokens=8, temperature=1.0, seed=-5)
    assert completer.complete(completer.encode_text(PROMPT), negative) == \
        completer.complete(completer.encode_text(PROMPT), negative)
    with pytest.raises(APIError, match="greedy") as greedy_n:
        completer.complete(completer.encode_text(PROMPT), Sampling(max_tokens=4, temperature=0, n=2))
    assert greedy_n.value.param == "n"


def test_penalties_reach_genai(completer):
    config = completer.generation_config(completer.encode_text(PROMPT),
                                         Sampling(presence_penalty=1.5, frequency_penalty=-0.5, temperature=0.7,
                                                  top_p=0.9), 16)
    assert (config.presence_penalty, config.frequency_penalty) == (1.5, -0.5)
    assert config.do_sample and config.temperature == pytest.approx(0.7) and config.top_p == pytest.approx(0.9)
    penalised = completer.complete(completer.encode_text(PROMPT),
                                   Sampling(max_tokens=24, temperature=0, frequency_penalty=2.0))[0]
    assert penalised.tokens == 24


def test_context_length(completer):
    with pytest.raises(APIError, match="maximum context length is 256") as error:
        completer.complete(completer.encode_text(PROMPT), Sampling(max_tokens=300))
    assert error.value.code == "context_length_exceeded"


def test_response_format_goes_to_structured_output(completer):
    """Wired through ov_causal.model.structured when it is there; a clear 400 while it is not."""
    prompt = completer.encode_text(PROMPT)
    wanted = Sampling(max_tokens=8, temperature=0, response_format={"type": "json_object"})
    try:
        import ov_causal.model.structured  # noqa: F401
    except ImportError:
        with pytest.raises(APIError, match="response_format") as missing:
            completer.generation_config(prompt, wanted, 16)
        assert missing.value.status == 400 and missing.value.param == "response_format"
        return
    assert completer.generation_config(prompt, wanted, 16).structured_output_config is not None
    plain = Sampling(max_tokens=8, temperature=0, response_format={"type": "text"})
    assert completer.generation_config(prompt, plain, 16).structured_output_config is None


def test_incremental_text_equals_decoding_everything(completer):
    """Streamed text is decoded a few tokens at a time (not the whole reply at every step), and is the same."""
    import random

    from ov_causal.serving.completer import IncrementalText

    sizes: list[int] = []

    def decode(tokens):
        sizes.append(len(tokens))
        return completer.core.decode(tokens)

    rng = random.Random(0)
    tokens = completer.core.encode("def parse_args(argv):\n    return [a.strip() for a in argv if a] # ünïcode ✓")
    tokens += [rng.randrange(2, 200) for _ in range(300)] + completer.core.encode(" done.")
    text = IncrementalText(decode)
    for start in range(0, len(tokens), 3):
        text.extend(tokens[start:start + 3])
    assert text.text == completer.core.decode(tokens)
    steps = len(range(0, len(tokens), 3))
    assert sum(sizes) < 20 * len(tokens) < steps * len(tokens) / 4  # linear in the reply, not quadratic
