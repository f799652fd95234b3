"""The OpenAI-compatible server on Ray Serve: queried with the ``openai`` client on loopback, tiny local model."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import free_port

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from ov_causal import ModelSourceError, OptionError  # noqa: E402
from ov_causal.serving import ray_serve as serving  # noqa: E402
from ov_causal.serving.openai_api import REPLICA_HEADER  # noqa: E402

NAME = "tiny-llama"
BODY_LIMIT = 256 * 1024
BODY_TIMEOUT = 3.0
PROMPT = "def parse_args(argv):\n    "
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "import json"}]


@pytest.fixture(scope="module")
def checkpoint(make_checkpoint):
    return make_checkpoint("llama")


@pytest.fixture(scope="module")
def server(checkpoint):
    """(base url, port): one server for the module, shut down (with Ray) at the end."""
    port = free_port()
    url = serving.serve(str(checkpoint), name=NAME, port=port, chat_template=TEMPLATE, num_cpus=0.5,
                        max_batch=4, max_queue=8, max_body_bytes=BODY_LIMIT, body_timeout=BODY_TIMEOUT,
                        blocking=False)
    yield url, port
    serving.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0], api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def pipe(checkpoint):
    """The reference: a plain ``ov_causal.pipeline`` on the same model, greedy."""
    import ov_causal

    generator = ov_causal.pipeline("text-generation", model=str(checkpoint))
    generator.tokenizer.chat_template = TEMPLATE
    return generator


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME


def test_completion_equals_pipeline(client, pipe):
    result = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=12, temperature=0)
    expected = pipe(PROMPT, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert result.choices[0].text == expected
    assert result.object == "text_completion" and result.id.startswith("cmpl-") and result.model == NAME
    assert result.usage.prompt_tokens == len(pipe.tokenizer(PROMPT)["input_ids"])
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.choices[0].finish_reason in ("stop", "length")
    if result.choices[0].finish_reason == "length":
        assert result.usage.completion_tokens == 12


def test_streaming_equals_plain(client):
    plain = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_equals_pipeline(client, pipe):
    result = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0)
    expected = pipe(MESSAGES, max_new_tokens=10, do_sample=False)[0]["generated_text"][-1]
    assert expected["role"] == "assistant"
    assert result.choices[0].message.content == expected["content"]
    assert result.choices[0].message.role == "assistant" and result.object == "chat.completion"
    stream = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected["content"]
    assert chunks[-1].choices[0].finish_reason == result.choices[0].finish_reason


def test_n_seed_and_stop(client):
    sampled = [client.completions.create(model=NAME, prompt=PROMPT, max_tokens=8, n=2, temperature=1.0, seed=7)
               for _ in range(2)]
    assert len(sampled[0].choices) == 2 and [c.index for c in sampled[0].choices] == [0, 1]
    assert [c.text for c in sampled[0].choices] == [c.text for c in sampled[1].choices]  # same seed, same text
    greedy = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0).choices[0].text
    stop = greedy.strip()[3:6]
    assert stop, greedy
    cut = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].text == greedy[: greedy.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0, stop=stop,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"model": NAME}, 400, "prompt"),
    ({"model": NAME, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
    ({"model": NAME, "prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ({"model": NAME, "prompt": "x", "logprobs": 6}, 400, "logprobs"),  # OpenAI allows at most 5
    ({"model": NAME, "prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
    ({"model": NAME, "prompt": "x", "n": 2, "temperature": 0}, 400, "n"),
    ({"model": "gpt-4o", "prompt": "x"}, 404, "model"),
    ({"model": NAME, "prompt": "x", "max_tokens": "12"}, 400, "max_tokens"),
    ({"model": NAME, "prompt": "x", "max_tokens": True}, 400, "max_tokens"),
    ({"model": NAME, "prompt": "x", "temperature": "0.5"}, 400, "temperature"),
    ({"model": NAME, "prompt": "x", "stream": "yes"}, 400, "stream"),
    ({"model": NAME, "prompt": "x", "stream_options": {"include_usage": "yes"}}, 400, "stream_options"),
    ({"model": NAME, "prompt": "x", "seed": 2**63}, 400, "seed"),
    ({"model": NAME, "prompt": "x", "seed": -(2**63) - 1}, 400, "seed"),
    (b'{"model": "tiny-llama", "prompt": "x", "temperature": NaN}', 400, "temperature"),
    (b'{"model": "tiny-llama", "prompt": "\\ud800"}', 400, "prompt"),
    (b'{"model": "tiny-llama", "prompt": "x", "stream": true, "stop": ["\\udc00"]}', 400, "stop"),
])
def test_bad_request_then_serving_goes_on(server, client, body, status, param):
    url = server[0] + "/completions"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    else:
        response = httpx.post(url, json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    if status == 404:
        assert error["code"] == "model_not_found" and NAME in error["message"]
    assert client.completions.create(model=NAME, prompt="x", max_tokens=2).choices[0].text is not None


def test_chat_lone_surrogate_and_unknown_route(server):
    body = b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "a\\ud800"}], "stream": true}'
    response = httpx.post(server[0] + "/chat/completions", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    for method, path, status in (("GET", "/v1/nothing", 404), ("GET", "/v1/completions", 405)):
        response = httpx.request(method, f"http://127.0.0.1:{server[1]}{path}", timeout=60)
        assert response.status_code == status and set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_oversized_body_gets_413_before_tokenizing(server, client):
    prompt = "x " * BODY_LIMIT
    response = httpx.post(server[0] + "/completions", json={"model": NAME, "prompt": prompt}, timeout=60)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"

    def chunks():  # no content-length: counted as it arrives
        data = json.dumps({"model": NAME, "prompt": prompt}).encode()
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    response = httpx.post(server[0] + "/completions", content=chunks(), timeout=60,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.completions.create(model=NAME, prompt="x", max_tokens=2).choices[0].text is not None


def test_stalled_clients_do_not_block_the_others(server, client):
    stalled = []
    for _ in range(20):  # more than a replica's batch and queue
        sock = socket.create_connection(("127.0.0.1", server[1]))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{\"model\": ")
        stalled.append(sock)
    try:
        time.sleep(0.5)
        start = time.monotonic()
        for _ in range(3):
            assert client.completions.create(model=NAME, prompt=PROMPT, max_tokens=4).choices[0].text is not None
        assert time.monotonic() - start < BODY_TIMEOUT
        sock = stalled[0]
        sock.settimeout(BODY_TIMEOUT + 30)
        answer_bytes = b""
        while part := sock.recv(4096):  # the server closes the connection after its answer
            answer_bytes += part
        answer = answer_bytes.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer
    finally:
        for sock in stalled:
            sock.close()


def _metrics(server) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{server[1]}/metrics", timeout=60).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" not in sample.labels:
                values[key] = sample.value
    return values


def _idle(server) -> dict[str, float]:
    deadline = time.monotonic() + 60
    while True:
        values = _metrics(server)
        busy = [values[k] for k in ("ov_causal_running_requests", "ov_causal_queued_requests",
                                    "ov_causal_kv_cache_usage_ratio")]
        if not any(busy) or time.monotonic() > deadline:
            assert busy == [0, 0, 0], values
            return values


def test_health_and_metrics(server, client):
    health = httpx.get(f"http://127.0.0.1:{server[1]}/health", timeout=60)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    before = _idle(server)
    client.completions.create(model=NAME, prompt=PROMPT, max_tokens=5, temperature=0)
    after = _idle(server)
    assert after["ov_causal_requests_total{status=200}"] > before.get("ov_causal_requests_total{status=200}", 0)
    assert after["ov_causal_generation_tokens_total"] >= before.get("ov_causal_generation_tokens_total", 0) + 1
    assert after["ov_causal_time_to_first_token_seconds_count"] > before["ov_causal_time_to_first_token_seconds_count"]
    assert after["ov_causal_request_latency_seconds_count"] > before["ov_causal_request_latency_seconds_count"]
    assert after["process_resident_memory_bytes"] > 50e6


def test_burst_and_dropped_streams_leak_nothing(server, client):
    """64 clients at once on a batch of 4 and a queue of 8, half of them streams dropped after a piece."""
    url = server[0] + "/completions"

    def ask(i: int) -> tuple[int, dict[str, str], str]:
        body = {"model": NAME, "prompt": f"{i} {PROMPT}", "max_tokens": 48, "temperature": 0}
        if i % 2:
            with httpx.stream("POST", url, json={**body, "stream": True}, timeout=120) as response:
                if response.status_code == 200:
                    next(response.iter_lines())  # one piece, then the client goes away
                    return 200, dict(response.headers), ""
                return response.status_code, dict(response.headers), response.read().decode()
        response = httpx.post(url, json=body, timeout=120)
        return response.status_code, dict(response.headers), response.text

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(ask, range(64)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 12 and 429 in statuses, statuses
    for status, headers, text in answers:
        if status == 429:
            assert headers["retry-after"] == "1" and json.loads(text)["error"]["code"] == "queue_full"
        assert re.fullmatch(r"replica-\d+", headers[REPLICA_HEADER]), headers[REPLICA_HEADER]
    _idle(server)
    assert client.completions.create(model=NAME, prompt=PROMPT, max_tokens=3).usage.completion_tokens >= 1


def test_replica_imports_no_torch(server):
    import ray

    names = [n for n in ray.util.list_named_actors(all_namespaces=True) if "OVCausalServer" in n["name"]]
    assert names
    replica = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
    loaded = ray.get(replica.__ray_call__.remote(
        lambda _: [m for m in ("torch", "transformers", "optimum") if m in sys.modules]))
    assert loaded == []


def test_default_name(checkpoint):
    assert serving.default_name(str(checkpoint)) == checkpoint.name
    assert serving.default_name("org/model") == "org/model"


def test_openai_client_errors(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="other", messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=NAME, messages=[], max_tokens=2)


def test_port_in_use(server, checkpoint, monkeypatch):
    with pytest.raises(OptionError, match=f"{server[1]}.*--port"):
        serving.check_port("127.0.0.1", server[1])  # the running server holds it
    with socket.socket() as other:  # another program listening: refused before any model or Ray work
        other.bind(("127.0.0.1", 0))
        other.listen()
        monkeypatch.setattr(serving, "_RUNNING", {})
        with pytest.raises(OptionError, match="--port"):
            serving.serve(str(checkpoint), port=other.getsockname()[1], blocking=False)


def test_unknown_model_fails_before_ray(server, tmp_path, monkeypatch):
    monkeypatch.setattr(serving, "_RUNNING", {})
    with pytest.raises(ModelSourceError):
        serving.serve(str(tmp_path / "no-such-model"), port=free_port(), blocking=False)


def test_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r'pip install "ov_causal\[ray\]"'):
        serving.serve("anything", blocking=False)


def test_import_does_not_import_ray():
    code = ("import ov_causal, ov_causal.serving.ray_serve, sys; "
            "assert 'ray' not in sys.modules and 'fastapi' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_two_replicas_share_the_load(server, checkpoint, client):
    """Last: redeploys the module's server with two replicas on the same port."""
    url = serving.serve(str(checkpoint), name=NAME, port=server[1], replicas=2, chat_template=TEMPLATE,
                        num_cpus=0.5, blocking=False)
    assert url == server[0]

    def ask(i: int) -> tuple[str, str]:
        response = httpx.post(url + "/completions", json={"model": NAME, "prompt": PROMPT, "max_tokens": 8,
                                                          "temperature": 0}, timeout=120)
        assert response.status_code == 200, (response.status_code, response.headers, response.text)
        return response.headers[REPLICA_HEADER], response.json()["choices"][0]["text"]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(16)))
    assert len({replica for replica, _ in answers}) == 2, answers
    assert len({text for _, text in answers}) == 1  # every replica answers the same greedy text
