"""logprobs, top_logprobs and prompt scoring (echo) on the single-process server, against transformers on the same
weights; lm-eval's ``local-completions`` on a local task against lm-eval's in-process ``hf`` model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from .conftest import free_port

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from ov_causal.serving import ray_serve as serving  # noqa: E402

NAME = "tiny-llama"
PROMPT = "def parse_args(argv):\n    "
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "import json"}]
TOLERANCE = 1e-3  # fp32 IR on OpenVINO vs fp32 torch: measured differences are ~1e-5
TASKS = Path(__file__).resolve().parent / "data" / "lm_eval"


@pytest.fixture(scope="module")
def checkpoint(make_checkpoint):
    return make_checkpoint("llama")


@pytest.fixture(scope="module")
def server(make_export):
    port = free_port()
    url = serving.serve(str(make_export("llama", preset="fp32")), ray=False, name=NAME, port=port,
                        chat_template=TEMPLATE, max_batch=4, max_queue=16, blocking=False)
    yield url
    serving.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def reference(torch_model, checkpoint):
    """``reference(ids)`` -> transformers' log_softmax [len(ids), vocabulary] on the same weights (fp32)."""
    import torch
    from transformers import AutoTokenizer

    model = torch_model("llama")

    def log_softmax(ids: list[int]):
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)

    log_softmax.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return log_softmax


def _check_top(top: dict[str, float] | list, chosen: float | None = None) -> None:
    values = list(top.values()) if isinstance(top, dict) else [t.logprob for t in top]
    assert values == sorted(values, reverse=True)
    if chosen is not None:  # greedy: the chosen token is the most likely one, with the same number
        assert values[0] == chosen


def _byte_level() -> dict[str, int]:
    """GPT-2's byte <-> printable character table (the tokenizer's vocabulary spells bytes with it)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _name(tokenizer, token: int) -> str:
    """A token as OpenAI names it: its text, or ``bytes:\\x..`` when it is part of a character."""
    table = _byte_level()
    data = bytes(table[c] for c in tokenizer.convert_ids_to_tokens(token))
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def _id(tokenizer, name: str) -> int:
    """The id of a token OpenAI-named ``name`` (``_name``'s inverse)."""
    data = bytes.fromhex(name[6:].replace("\\x", "")) if name.startswith("bytes:") else name.encode()
    chars = {b: c for c, b in _byte_level().items()}
    return tokenizer.convert_tokens_to_ids("".join(chars[b] for b in data))


def _text(tokens: list[str]) -> str:
    """The text of OpenAI token names (``bytes:\\xdd`` for pieces of a character; a random model writes them)."""
    data = b"".join(bytes.fromhex(t[6:].replace("\\x", "")) if t.startswith("bytes:") else t.encode()
                    for t in tokens)
    return data.decode(errors="replace")


def test_prompt_scoring_matches_transformers(client, reference):
    result = client.completions.create(model=NAME, prompt=PROMPT, echo=True, logprobs=3, max_tokens=0)
    choice = result.choices[0]
    ids = reference.tokenizer(PROMPT)["input_ids"]
    expected = reference(ids)
    lp = choice.logprobs
    assert choice.text == PROMPT and result.usage.completion_tokens == 0 and result.usage.prompt_tokens == len(ids)
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert "".join(lp.tokens) == PROMPT
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(ids))]
    for i in range(1, len(ids)):
        assert abs(lp.token_logprobs[i] - expected[i - 1, ids[i]].item()) < TOLERANCE
        best = expected[i - 1].topk(3)
        assert len(lp.top_logprobs[i]) == 3
        _check_top(lp.top_logprobs[i])
        names = [_name(reference.tokenizer, t) for t in best.indices.tolist()]
        assert list(lp.top_logprobs[i]) == names
        assert all(abs(a - b) < TOLERANCE for a, b in zip(lp.top_logprobs[i].values(), best.values.tolist()))


def test_batched_token_ids_as_lm_eval_sends_them(client, reference):
    prompts = [reference.tokenizer(p)["input_ids"] for p in (PROMPT, "import json\n", "class Parser:")]
    result = client.completions.create(model=NAME, prompt=prompts, echo=True, logprobs=1, max_tokens=1,
                                       temperature=0)
    assert [c.index for c in result.choices] == [0, 1, 2]
    for ids, choice in zip(prompts, result.choices):
        lp = choice.logprobs
        assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
        expected = reference(ids)
        generated = int(expected[-1].argmax())  # greedy: the engine's token is the reference's argmax
        assert lp.tokens[-1] == reference.tokenizer.decode([generated])
        assert abs(lp.token_logprobs[-1] - expected[-1, generated].item()) < TOLERANCE
        _check_top(lp.top_logprobs[-1], lp.token_logprobs[-1])
        assert choice.text == reference.tokenizer.decode(ids) + lp.tokens[-1]


def test_completion_logprobs_of_generated_tokens(client, reference):
    result = client.completions.create(model=NAME, prompt=PROMPT, logprobs=2, max_tokens=8, temperature=0)
    choice = result.choices[0]
    lp = choice.logprobs
    assert _text(lp.tokens) == choice.text and lp.text_offset[0] == 0
    ids = reference.tokenizer(PROMPT)["input_ids"]
    generated = [_id(reference.tokenizer, t) for t in lp.tokens]
    expected = reference(ids + generated)
    for i, (value, top) in enumerate(zip(lp.token_logprobs, lp.top_logprobs)):
        assert abs(value - expected[len(ids) + i - 1, generated[i]].item()) < TOLERANCE
        _check_top(top, value)


def test_chat_logprobs_shape_and_values(client, reference):
    result = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=6, temperature=0,
                                            logprobs=True, top_logprobs=3)
    content = result.choices[0].logprobs.content
    text = result.choices[0].message.content
    assert content and b"".join(bytes(t.bytes) for t in content).decode(errors="replace") == text
    prompt = reference.tokenizer(TEMPLATE_RENDERED, add_special_tokens=False)["input_ids"]
    generated = [_id(reference.tokenizer, t.token) for t in content]
    expected = reference(prompt + generated)
    for i, entry in enumerate(content):
        assert _text([entry.token]) == bytes(entry.bytes).decode(errors="replace")
        assert abs(entry.logprob - expected[len(prompt) + i - 1, generated[i]].item()) < TOLERANCE
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        _check_top(entry.top_logprobs, entry.logprob)
    plain = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=6, temperature=0,
                                           logprobs=True)
    assert [t.top_logprobs for t in plain.choices[0].logprobs.content] == [[]] * len(content)
    assert client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=2).choices[0].logprobs is None


TEMPLATE_RENDERED = "<|system|>You write Python.\n<|user|>import json\n<|assistant|>"


def test_streamed_logprobs_equal_plain(client):
    plain = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0,
                                           logprobs=True, top_logprobs=2)
    chunks = list(client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0,
                                                 logprobs=True, top_logprobs=2, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    expected = plain.choices[0].logprobs.content
    assert [t.token for t in streamed] == [t.token for t in expected]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(streamed, expected))
    for chunk in chunks:  # each chunk's logprobs are the tokens of its own text
        if chunk.choices and chunk.choices[0].logprobs:
            assert _text([t.token for t in chunk.choices[0].logprobs.content]) == chunk.choices[0].delta.content
    text = client.completions.create(model=NAME, prompt=PROMPT, logprobs=1, max_tokens=8, temperature=0)
    pieces = [c.choices[0] for c in client.completions.create(model=NAME, prompt=PROMPT, logprobs=1, max_tokens=8,
                                                              temperature=0, stream=True)]
    tokens = [t for p in pieces if p.logprobs for t in p.logprobs.tokens]
    offsets = [o for p in pieces if p.logprobs for o in p.logprobs.text_offset]
    assert tokens == text.choices[0].logprobs.tokens and offsets == text.choices[0].logprobs.text_offset


@pytest.mark.parametrize(("path", "body", "param"), [
    ("chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("chat/completions", {"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs"),
    ("chat/completions", {"messages": MESSAGES, "logprobs": 1}, "logprobs"),
    ("completions", {"prompt": PROMPT, "logprobs": 6}, "logprobs"),
    ("completions", {"prompt": PROMPT, "logprobs": True}, "logprobs"),
    ("completions", {"prompt": PROMPT, "max_tokens": 0}, "max_tokens"),
    ("completions", {"prompt": PROMPT, "echo": True, "stream": True, "logprobs": 1}, "echo"),
    ("completions", {"prompt": PROMPT, "echo": True, "max_tokens": 0, "n": 2, "temperature": 1}, "n"),
    ("completions", {"prompt": [5, 10**6], "echo": True, "max_tokens": 0, "logprobs": 0}, "prompt"),
    ("completions", {"prompt": [], "echo": True, "max_tokens": 0}, "prompt"),
    ("completions", {"prompt": [[5, 6], [7, 10**6]], "max_tokens": 2}, "prompt"),  # never reaches the engine
])
def test_refusals_name_the_field(server, path, body, param):
    response = httpx.post(f"{server}/{path}", json={"model": NAME, "max_tokens": 2, **body}, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_scoring_an_overlong_prompt_is_refused(server):
    response = httpx.post(f"{server}/completions", json={"model": NAME, "prompt": [5] * 300, "echo": True,
                                                          "max_tokens": 0, "logprobs": 0}, timeout=120)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_lm_eval_local_completions_matches_hf(server, checkpoint, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval)")
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(TASKS.parents[2])  # the task's data_files path is relative to the repository root
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = TaskManager(include_path=str(TASKS))
    common = dict(tasks=["ov_causal_capitals"], task_manager=tasks, log_samples=True, batch_size=4)
    served = lm_eval.simple_evaluate(
        model="local-completions", model_args=f"base_url={server}/completions,model={NAME},"
        f"tokenizer_backend=huggingface,tokenizer={checkpoint}", **common)
    local = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={checkpoint},dtype=float32", device="cpu",
                                    **common)
    ours, theirs = (_loglikelihoods(r) for r in (served, local))
    assert len(ours) == len(theirs) == 32
    assert all(abs(a[0] - b[0]) < TOLERANCE and a[1] == b[1] for a, b in zip(ours, theirs))
    acc = [r["results"]["ov_causal_capitals"]["acc,none"] for r in (served, local)]
    assert acc[0] == acc[1] and not math.isnan(acc[0])


def _loglikelihoods(results: dict) -> list[tuple[float, bool]]:
    samples = sorted(results["samples"]["ov_causal_capitals"], key=lambda s: s["doc_id"])
    return [(float(r[0][0]), bool(r[0][1])) for s in samples for r in s["resps"]]


def test_task_data_is_valid_json():
    rows = [json.loads(line) for line in (TASKS / "capitals.jsonl").read_text().splitlines()]
    assert rows and all(0 <= r["answer"] < len(r["choices"]) for r in rows)
