"""Serving LoRA adapters by name (``serve(..., lora={name: folder})``): concurrent requests for two adapters and the
base each give their own adapter's greedy output (equal to its fused export), ``/v1/models`` lists them, an
unknown ``model`` is a 404 naming them, a bad adapter fails before serving, and no adapter group starves."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from .conftest import free_port
from .test_adapters import PROMPT, adapters, fused  # noqa: F401 - module fixtures shared with the model-level tests

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from ov_causal.errors import LoraError, OptionError  # noqa: E402
from ov_causal.serving import ray_serve as serving  # noqa: E402
from ov_causal.serving.adapters import must_switch, next_group  # noqa: E402
from ov_causal.serving.launch import new_core  # noqa: E402
from ov_causal.serving.options import ServeOptions, served_lora  # noqa: E402

NAME = "tiny-llama"
TOKENS = 12


@pytest.fixture(scope="module")
def server(make_export, adapters):  # noqa: F811
    url = serving.serve(str(make_export()), ray=False, name=NAME, port=free_port(), runtime="accuracy", max_batch=4,
                        max_queue=32, lora={"a": str(adapters["a"]), "b": adapters["b"]}, blocking=False)
    yield url
    serving.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def expected(fused, make_export):  # noqa: F811
    """The text each model id must give: its fused export's greedy continuation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_export())
    start = len(tokenizer(PROMPT[0])["input_ids"])
    texts = {NAME if name == "base" else name: tokenizer.decode(out[0][start:start + TOKENS], skip_special_tokens=True)
             for name, out in fused.items() if name != "mix"}
    assert len(set(texts.values())) == 3
    return texts


def test_models_lists_base_and_adapters(client, adapters):  # noqa: F811
    cards = client.models.list().data
    assert [c.id for c in cards] == [NAME, "a", "b"]
    assert [getattr(c, "parent", None) for c in cards] == [None, NAME, NAME]
    assert client.models.retrieve("b").root == str(adapters["b"])


def test_concurrent_requests_get_their_own_adapter(client, expected):
    order = [NAME, "a", "b"] * 3
    results: dict[int, str] = {}

    def ask(i: int, model: str) -> None:
        answer = client.completions.create(model=model, prompt=PROMPT[0], max_tokens=TOKENS, temperature=0)
        assert answer.model == model
        results[i] = answer.choices[0].text

    threads = [threading.Thread(target=ask, args=(i, m)) for i, m in enumerate(order)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results.get(i) for i in range(len(order))] == [expected[m] for m in order]


def test_unknown_model_is_404_naming_the_served_ones(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="c", prompt=PROMPT[0], max_tokens=2)
    message = str(caught.value)
    assert "'c'" in message and all(repr(name) in message for name in (NAME, "a", "b"))


def test_bad_adapter_fails_before_serving(make_export, adapters, tmp_path):  # noqa: F811
    """Both servers build their cores with ``new_core``, which reads and checks every adapter first."""
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(LoraError, match="adapter 'x' cannot be served: .* has no adapter_model"):
        new_core(make_export(), {}, ServeOptions(lora=(("x", str(tmp_path)),)))
    with pytest.raises(LoraError, match="not a folder"):
        new_core(make_export(), {}, ServeOptions(lora=(("x", str(tmp_path / "missing")),)))
    with pytest.raises(OptionError, match="name"):
        ServeOptions(name="a", lora=(("a", str(adapters["a"])),))
    assert served_lora({"a": adapters["a"]}) == ((("a", str(adapters["a"])),), None)
    assert served_lora({str(adapters["a"]): 0.5}) == ((), {str(adapters["a"]): 0.5})  # fused at export
    assert served_lora(()) == served_lora(None) == ((), None)


def _waiting(*groups):
    return [SimpleNamespace(adapter=g, cancelled=False) for g in groups]


def test_scheduling_rule():
    assert next_group(_waiting("b", None, "a")) == "b"  # the oldest waiting request's group
    assert not must_switch("a", _waiting("a", "a"), held_s=60, slice_s=2)  # nobody else waits: keep going
    assert not must_switch("a", _waiting("b"), held_s=1, slice_s=2)  # within its slice
    assert must_switch("a", _waiting("a", "b"), held_s=2, slice_s=2)
    assert must_switch(None, _waiting("a"), held_s=3, slice_s=2)


def test_metrics_count_requests_by_adapter(server, client):
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def counts():
        text = opener.open(server.removesuffix("/v1") + "/metrics", timeout=30).read().decode()
        return {label: float(line.rsplit(" ", 1)[1]) for label in ("", "a", "b") for line in text.splitlines()
                if line.startswith(f'ov_causal_adapter_requests_total{{adapter="{label}"}}')}

    before = counts()
    client.completions.create(model="b", prompt=PROMPT[0], max_tokens=2)
    client.completions.create(model="b", prompt=PROMPT[0], max_tokens=2)
    client.completions.create(model=NAME, prompt=PROMPT[0], max_tokens=2)
    after = counts()
    assert {k: after[k] - before[k] for k in after} == {"": 1, "a": 0, "b": 2}


def test_cli_lora_flags():
    from ov_causal.cli.serve import lora_flags

    assert lora_flags(["sql=adapters/sql", "chat=/x/y"]) == {"sql": "adapters/sql", "chat": "/x/y"}
    for bad in (["sql"], ["=x"], ["a=x", "a=y"]):
        with pytest.raises(OptionError, match="NAME=FOLDER"):
            lora_flags(bad)


def test_adapters_never_share_prompt_kv_blocks(make_export, adapters):  # noqa: F811
    """A long prompt run for the base first must not lend its KV blocks (prefix caching) to an adapter's run."""
    from ov_causal.serving.adapters import load_adapters
    from ov_causal.serving.scheduler import ServingCore

    folder = make_export()
    served = load_adapters(folder, [("b", str(adapters["b"]))])
    core = ServingCore(folder, properties={"INFERENCE_PRECISION_HINT": "f32"}, adapters=served)
    try:
        prompt = PROMPT[0] * 40  # many KV blocks

        def run(adapter):
            config = core.generation_config()
            config.max_new_tokens = config.min_new_tokens = 8
            config.do_sample = False
            return core.submit(prompt, config, adapter=adapter).result()[0].tokens

        first_b = run("b")
        base = run(None)
        assert base != first_b
        assert run("b") == first_b and run(None) == base
    finally:
        core.close()
