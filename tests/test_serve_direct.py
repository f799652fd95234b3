"""``serve(..., ray=False)`` / ``ov-causal serve --no-ray``: one replica in this process on uvicorn, no Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import free_port

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from ov_causal import MissingExtraError, OptionError  # noqa: E402
from ov_causal.serving import ray_serve as serving  # noqa: E402
from ov_causal.serving.direct import REPLICA, load_folder  # noqa: E402
from ov_causal.serving.openai_api import REPLICA_HEADER  # noqa: E402

NAME = "tiny-llama"
PROMPT = "def parse_args(argv):\n    "
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "import json"}]
WORKTREE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export(make_export):
    return make_export("llama")


@pytest.fixture(scope="module")
def server(export):
    """(base url, port): a single-process server for the module."""
    port = free_port()
    url = serving.serve(str(export), ray=False, name=NAME, port=port, chat_template=TEMPLATE, max_batch=4,
                        max_queue=8, blocking=False)
    yield url, port
    serving.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0], api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def pipe(export):
    """The reference: a plain ``ov_causal.pipeline`` on the same folder, greedy."""
    import ov_causal

    generator = ov_causal.pipeline("text-generation", model=str(export))
    generator.tokenizer.chat_template = TEMPLATE
    return generator


def test_completion_equals_pipeline(server, client, pipe):
    assert server[0] == f"http://127.0.0.1:{server[1]}/v1"
    result = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=12, temperature=0)
    expected = pipe(PROMPT, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert result.choices[0].text == expected and expected
    assert result.usage.prompt_tokens == len(pipe.tokenizer(PROMPT)["input_ids"])
    assert [m.id for m in client.models.list().data] == [NAME]


def test_streaming_equals_plain(client):
    plain = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_equals_pipeline(client, pipe):
    expected = pipe(MESSAGES, max_new_tokens=10, do_sample=False)[0]["generated_text"][-1]["content"]
    result = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0)
    assert result.choices[0].message.content == expected
    stream = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == expected


def test_health_metrics_and_header(server, client):
    base = server[0].removesuffix("/v1")
    health = httpx.get(f"{base}/health", timeout=60)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    response = httpx.post(f"{server[0]}/completions", json={"model": NAME, "prompt": PROMPT, "max_tokens": 3},
                          timeout=60)
    assert response.status_code == 200 and response.headers[REPLICA_HEADER] == REPLICA
    metrics = httpx.get(f"{base}/metrics", timeout=60).text
    served = [line for line in metrics.splitlines() if line.startswith('ov_causal_requests_total{status="200"}')]
    assert served and float(served[0].split()[-1]) >= 1, metrics
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="other", prompt=PROMPT, max_tokens=2)


def test_refused_options(export, server):
    with pytest.raises(OptionError, match=r"replicas=2 needs Ray Serve.*replicas=1"):
        serving.serve(str(export), ray=False, replicas=2, port=free_port(), blocking=False)
    with pytest.raises(OptionError, match="num_cpus"):
        serving.serve(str(export), ray=False, num_cpus=1, port=free_port(), blocking=False)
    with pytest.raises(OptionError, match=f"already runs on 127.0.0.1:{server[1]}"):
        serving.serve(str(export), ray=False, port=free_port(), blocking=False)
    with pytest.raises(OptionError, match="single-process server"):
        serving.serve(str(export), port=server[1], blocking=False)


def test_busy_port_and_missing_extra(export, monkeypatch):
    monkeypatch.setattr(serving, "_RUNNING", {})
    with socket.socket() as other:  # another program listening: refused before the model loads
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OptionError, match="--port"):
            serving.serve(str(export), ray=False, port=other.getsockname()[1], blocking=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError: Ray Serve names its extra and --no-ray
    with pytest.raises(MissingExtraError, match=r'pip install "ov_causal\[ray\]" \(it holds the serve extra too\)\. '
                                                r'Or serve in this process without Ray: ray=False \(ov-causal serve '
                                                r'--no-ray\), which needs only pip install "ov_causal\[serve\]"'):
        serving.serve(str(export), port=free_port(), blocking=False)
    for module in ("uvicorn", "prometheus_client"):  # the single-process server needs the serve extra, not Ray's
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)
            with pytest.raises(MissingExtraError, match=rf'needs {module!r}.*pip install "ov_causal\[serve\]"$'):
                serving.serve(str(export), ray=False, port=free_port(), blocking=False)


def test_cached_checkpoint_is_ready(make_checkpoint, export, export_cache):
    """A checkpoint whose export is in the cache is served from the cache entry, without loading it."""
    keep, folder, properties, device = load_folder(str(make_checkpoint("llama")), None, "CPU", {})
    assert keep is None and device == "CPU" and export_cache in folder.parents
    assert (folder / "openvino_tokenizer.xml").is_file()
    _, folder, properties, _ = load_folder(str(export), None, "CPU", {"ov_config": {"INFERENCE_NUM_THREADS": 1}})
    assert folder == export and properties["INFERENCE_NUM_THREADS"] == "1"


CHILD = """
import json, sys
from ov_causal.serving.ray_serve import serve, shutdown
url = serve(sys.argv[1], ray=False, port=int(sys.argv[2]), name="m", blocking=False)
print(url, flush=True)
sys.stdin.readline()  # the parent has queried the server
print(json.dumps([m for m in ("torch", "transformers", "optimum", "ray", "nncf") if m in sys.modules]), flush=True)
shutdown()
"""


def test_process_stays_torch_free(export, pipe):
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(export), str(port)], cwd=WORKTREE, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ})
    try:
        url = child.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/v1", url
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        text = client.completions.create(model="m", prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text
        expected = pipe(PROMPT, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert text == expected
        assert "".join(c.choices[0].text for c in client.completions.create(
            model="m", prompt=PROMPT, max_tokens=12, temperature=0, stream=True)) == expected
        child.stdin.write("\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == []
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()


def test_cli_no_ray(export):
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "ov_causal", "serve", str(export), "--no-ray", "--port",
                              str(port), "--name", "m"], cwd=WORKTREE, text=True, stdout=subprocess.PIPE)
    try:
        first = child.stdout.readline()
        assert first.startswith(f"serving 'm' at http://127.0.0.1:{port}/v1 (in this process, no Ray)"), first
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60,
                            json={"model": "m", "prompt": PROMPT, "max_tokens": 4, "temperature": 0})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
        child.send_signal(signal.SIGINT)  # Ctrl-C: shut down, exit 0, port free
        assert child.wait(timeout=60) == 0
        serving.check_port("127.0.0.1", port)
    finally:
        child.kill()
        child.wait()


def test_shutdown_frees_the_port(server):
    """Last: stops the module's server."""
    serving.shutdown()
    serving.check_port("127.0.0.1", server[1])  # free again
    with pytest.raises(httpx.ConnectError):
        httpx.get(server[0].removesuffix("/v1") + "/health", timeout=5)
    assert serving._RUNNING == {}
    deadline = time.monotonic() + 5
    while any(t.name == "ov_causal-http" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the HTTP thread is still running"
        time.sleep(0.05)
