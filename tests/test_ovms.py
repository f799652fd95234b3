"""``ov-causal export --for ovms``: the layout and file contents OVMS documents (OVMS itself cannot run here)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ov_causal.cli import main

PROMPTS = ["def read_config(path):\n    with open(path) as f:", "x = {'a': 1, \"b\": [2, 3]}  # café ünïcode", ""]


def node_options(graph: str) -> dict[str, str]:
    """The ``LLMCalculatorOptions`` fields of a graph.pbtxt, values as written (quotes stripped)."""
    block = re.search(r"mediapipe\.LLMCalculatorOptions\]: \{(.*?)\n    \}", graph, flags=re.DOTALL)
    assert block, graph
    fields = re.findall(r"^\s*(\w+): (\"[^\"]*\"|'[^']*'|[\w.]+),?$", block.group(1), flags=re.MULTILINE)
    return {key: value.strip("'\"") for key, value in fields}


@pytest.fixture(scope="module")
def repo(make_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ovms") / "repo"
    with pytest.warns(UserWarning, match="no chat template"):
        code = main(["export", str(make_checkpoint("llama")), str(out), "--for", "ovms", "--name", "tiny",
                     "--max-num-seqs", "8", "--cache-size", "2", "--plugin-config", '{"KV_CACHE_PRECISION": "u8"}'])
    assert code == 0
    return out


def test_layout(repo):
    assert sorted(p.name for p in repo.iterdir()) == ["config.json", "tiny"]
    files = {p.name for p in (repo / "tiny").iterdir()}
    documented = {  # OVMS docs/llm/reference.md, "Models Directory"
        "openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_tokenizer.bin",
        "openvino_detokenizer.xml", "openvino_detokenizer.bin", "tokenizer_config.json", "chat_template.jinja",
    }
    assert documented | {"graph.pbtxt", "generation_config.json"} <= files
    assert not [p for p in repo.parent.iterdir() if ".partial-" in p.name]  # staging folder moved into place


def test_graph(repo):
    graph = (repo / "tiny" / "graph.pbtxt").read_text()
    assert 'calculator: "HttpLLMCalculator"' in graph
    for packet in ('input_side_packet: "LLM_NODE_RESOURCES:llm"', 'input_stream: "HTTP_REQUEST_PAYLOAD:input"',
                   'output_stream: "HTTP_RESPONSE_PAYLOAD:output"', "back_edge: true"):
        assert packet in graph
    assert graph.count("{") == graph.count("}")
    options = node_options(graph)
    assert options == {
        "models_path": "./", "plugin_config": '{"KV_CACHE_PRECISION": "u8"}', "enable_prefix_caching": "true",
        "cache_size": "2", "max_num_seqs": "8", "device": "CPU",
    }
    models = (repo / "tiny" / options["models_path"]).resolve()
    assert (models / "openvino_model.xml").is_file() and (models / "openvino_tokenizer.xml").is_file()
    json.loads(options["plugin_config"])


def test_config(repo):
    config = json.loads((repo / "config.json").read_text())
    assert config == {"model_config_list": [{"config": {"name": "tiny", "base_path": "tiny"}}]}
    base = repo / config["model_config_list"][0]["config"]["base_path"]  # relative to config.json
    assert (base / "graph.pbtxt").is_file()


def test_default_chat_template_renders(repo):
    import jinja2

    from ov_causal.serving.ovms import DEFAULT_CHAT_TEMPLATE

    text = (repo / "tiny" / "chat_template.jinja").read_text()
    assert text == DEFAULT_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def f():"}]
    assert jinja2.Template(text).render(messages=messages, add_generation_prompt=True) == "Be brief.\n\ndef f():"


def test_openvino_tokenizers_match_hf(repo):
    import openvino
    import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations with OpenVINO
    from transformers import AutoTokenizer

    core = openvino.Core()
    folder = repo / "tiny"
    tokenize = core.compile_model(core.read_model(folder / "openvino_tokenizer.xml"), "CPU")
    detokenize = core.compile_model(core.read_model(folder / "openvino_detokenizer.xml"), "CPU")
    hf = AutoTokenizer.from_pretrained(folder)
    for prompt in PROMPTS:
        ids = tokenize([prompt])["input_ids"][0].tolist()
        assert ids == hf(prompt)["input_ids"], prompt
        if ids:
            text = detokenize(tokenize([prompt])["input_ids"])["string_output"][0]
            assert text == hf.decode(ids, skip_special_tokens=True)


def test_chat_template_of_the_tokenizer_is_kept(make_export, tmp_path):
    from ov_causal.serving.ovms import export_ovms

    source = tmp_path / "with-template"
    shutil.copytree(make_export("llama"), source)
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
    (source / "chat_template.jinja").write_text(template)
    result = export_ovms(source, tmp_path / "out")
    assert result.name == "with-template" and not result.default_chat_template
    assert (result.model_dir / "chat_template.jinja").read_text() == template
    assert result.commands() == [
        f"ovms --rest_port 8000 --config_path {tmp_path / 'out' / 'config.json'}",
        f"ovms --rest_port 8000 --model_path {tmp_path / 'out' / 'with-template'} --model_name with-template",
    ]


def test_second_model_with_force_keeps_the_first(repo, make_export, tmp_path):
    from ov_causal.serving.ovms import export_ovms

    out = tmp_path / "repo"
    shutil.copytree(repo, out)
    with pytest.warns(UserWarning):
        export_ovms(make_export("llama"), out, name="second", force=True)
    names = [e["config"]["name"] for e in json.loads((out / "config.json").read_text())["model_config_list"]]
    assert names == ["tiny", "second"]
    assert (out / "tiny" / "graph.pbtxt").is_file() and (out / "second" / "graph.pbtxt").is_file()


def test_bad_out_and_bad_model(repo, make_checkpoint, tmp_path, capsys):
    before = sorted(p.name for p in repo.rglob("*"))
    assert main(["export", str(make_checkpoint("llama")), str(repo), "--for", "ovms"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in repo.rglob("*")) == before

    assert main(["export", str(tmp_path / "no-such-model"), str(tmp_path / "o1"), "--for", "ovms"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists()

    (tmp_path / "file").write_text("x")
    assert main(["export", str(make_checkpoint("llama")), str(tmp_path / "file"), "--for", "ovms"]) == 2
    assert "it is a file" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--name", "a/b"], "model name 'a/b' is not valid"),
    (["--device", "cuda:0"], "not an OpenVINO device name"),
    (["--max-num-seqs", "0"], "must be >= 1"),
    (["--plugin-config", "[1]"], "must be a JSON object"),
    (["--plugin-config", "{oops"], "is not JSON"),
])
def test_bad_options_fail_before_any_work(flags, message, tmp_path, capsys):
    assert main(["export", "unused-model", str(tmp_path / "out"), "--for", "ovms", *flags]) == 2
    assert message in capsys.readouterr().err


def test_ir_export_refuses_ovms_flags(tmp_path, capsys):
    assert main(["export", "unused-model", str(tmp_path / "out"), "--cache-size", "2"]) == 2
    assert "--cache-size only apply with --for ovms" in capsys.readouterr().err


def test_ir_export_loads(make_checkpoint, tmp_path):
    from ov_causal import AutoModelForCausalLM

    assert main(["export", str(make_checkpoint("llama")), str(tmp_path / "ir")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ir")
    assert model.ov_cache_hit is None and (tmp_path / "ir" / "openvino_tokenizer.xml").is_file()
