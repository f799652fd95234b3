"""save_pretrained -> from_pretrained keeps everything; the folder also works with GenAI and native OpenVINO."""

from __future__ import annotations

import json

import pytest
import torch

from ov_causal import AutoModelForCausalLM
from ov_causal.convert.manifest import MANIFEST_FILE

GREEDY = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def saved(make_checkpoint, tmp_path_factory):
    model = AutoModelForCausalLM.from_pretrained(
        make_checkpoint(), preset="int8", runtime="accuracy", ov_config={"NUM_STREAMS": 1}
    )
    out = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(out)
    return model, out


def test_folder_contents_and_manifest(saved):
    model, out = saved
    names = {p.name for p in out.iterdir()}
    assert {
        "openvino_model.xml", "openvino_model.bin", "config.json", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json", MANIFEST_FILE,
        "openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml", "openvino_detokenizer.bin",
    } <= names
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["preset"] == "int8"
    assert manifest["source"].endswith("ckpt-llama0")
    assert manifest["runtime"]["name"] == "accuracy" and manifest["ov_config"] == {"NUM_STREAMS": "1"}
    assert manifest["stateful"] is True
    assert {"openvino", "optimum-intel", "nncf", "transformers"} <= set(manifest["versions"])
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_reload_gives_same_output_and_restores_runtime(saved):
    model, out = saved
    tok = model.tokenizer
    inputs = tok(["def main(argv):"], return_tensors="pt")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.ov_runtime.name == "accuracy"
    assert reloaded.ov_config["NUM_STREAMS"] == "1" and reloaded.ov_config["KV_CACHE_PRECISION"] == "f32"
    assert reloaded.ov_manifest.preset == "int8"
    assert torch.equal(reloaded.generate(**inputs, **GREEDY), model.generate(**inputs, **GREEDY))
    overridden = AutoModelForCausalLM.from_pretrained(out, runtime="throughput")
    assert overridden.ov_config["PERFORMANCE_HINT"] == "THROUGHPUT" and "NUM_STREAMS" not in overridden.ov_config


def test_saving_into_an_existing_folder_keeps_other_files(saved, tmp_path):
    model, _ = saved
    (tmp_path / "README.md").write_text("my notes")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my notes"
    assert (tmp_path / "openvino_model.xml").is_file()


def test_stateless_round_trip_is_byte_identical(make_export, tmp_path):
    folder = make_export(stateful=False)
    model = AutoModelForCausalLM.from_pretrained(folder, runtime="accuracy")
    model.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "openvino_model.bin").read_bytes() == (folder / "openvino_model.bin").read_bytes()


def test_replaced_native_model_is_serialized(make_export, tmp_path):
    import nncf

    model = AutoModelForCausalLM.from_pretrained(make_export(), compile=False)
    model.model = nncf.compress_weights(model.model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    model.save_pretrained(tmp_path / "compressed")
    from ov_causal.convert.ir import weight_formats

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "compressed", compile=False)
    assert set(weight_formats(again.model)) == {"int8"}


def test_genai_and_native_openvino_use_the_saved_folder(saved):
    import openvino
    import openvino_genai

    model, out = saved
    prompt = "def main(argv):"
    properties = {k: v for k, v in model.ov_config.items() if k != "NUM_STREAMS"}  # same precision as ours
    pipe = openvino_genai.LLMPipeline(str(out), "CPU", **properties)
    config = openvino_genai.GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    text = pipe.generate(prompt, config, apply_chat_template=False)
    ids = model.generate(**model.tokenizer([prompt], return_tensors="pt"), **GREEDY)
    assert text == model.tokenizer.decode(ids[0, -12:], skip_special_tokens=True)
    core = openvino.Core()
    tokenizer = core.compile_model(out / "openvino_tokenizer.xml", "CPU")
    tokens = tokenizer([prompt])["input_ids"]
    assert tokens.tolist()[0] == model.tokenizer(prompt)["input_ids"]


def test_export_made_by_other_tools_is_described_from_its_weights(make_export, tmp_path):
    import shutil

    folder = tmp_path / "optimum-cli-export"
    shutil.copytree(make_export(preset="int4_sym_g64"), folder)
    (folder / MANIFEST_FILE).unlink()
    model = AutoModelForCausalLM.from_pretrained(folder, compile=False)
    assert model.ov_manifest.preset == "int4_sym_g64"
    assert model.ov_runtime.name == "latency"
