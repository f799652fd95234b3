"""Code written for optimum-intel runs with one import changed: ``from ov_causal import OVModelForCausalLM``.

Each test is a snippet of the OpenVINO documents (shared/seeds) on a tiny local model instead of a Hub id.
"""

from __future__ import annotations

import nncf
import openvino
import optimum.intel
import pytest
import torch
from optimum.intel import OVWeightQuantizationConfig
from transformers import AutoTokenizer, pipeline

import ov_causal
from ov_causal import AutoModelForCausalLM, OVModelForCausalLM, PresetError
from ov_causal.convert.ir import weight_formats

from .conftest import ARCHITECTURES

PROMPTS = ["def parse(args):", "import os\nclass Parser:\n    def __init__(self"]
EXACT = {"INFERENCE_PRECISION_HINT": "f32"}


def test_is_a_real_subclass_of_optimums_class(make_checkpoint, make_export):
    assert issubclass(OVModelForCausalLM, optimum.intel.OVModelForCausalLM)
    assert ov_causal.OVCausalLM is OVModelForCausalLM
    for arch in ("llama", "phi3", "gpt2"):
        model = OVModelForCausalLM.from_pretrained(make_export(arch), compile=False)
        assert isinstance(model, OVModelForCausalLM) and isinstance(model, optimum.intel.OVModelForCausalLM)
    from optimum.intel.openvino.modeling_decoder import OVPhi3ForCausalLM

    phi3 = AutoModelForCausalLM.from_pretrained(make_export("phi3"), compile=False)
    assert isinstance(phi3, OVPhi3ForCausalLM) and isinstance(phi3, OVModelForCausalLM)


def test_export_save_load_and_native_model(make_checkpoint, tmp_path):
    # llm-inference-hf.rst: export=True, save_pretrained("ov_model"), from_pretrained("ov_model"), model.model
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True)
    model.save_pretrained(tmp_path / "ov_model")
    model = OVModelForCausalLM.from_pretrained(tmp_path / "ov_model")
    openvino_model = model.model
    assert isinstance(openvino_model, openvino.Model)
    assert (tmp_path / "ov_model" / "openvino_model.xml").is_file()


def test_compile_false_then_to_then_compile(make_checkpoint, monkeypatch):
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, compile=False)
    assert model.request is None
    monkeypatch.setattr("ov_causal.config.options.available_devices", lambda: ["CPU", "GPU.0"])
    assert model.to("GPU")._device == "GPU"
    model.to("cpu")
    model.compile()
    assert isinstance(model.request.get_compiled_model(), openvino.CompiledModel)


def test_load_in_8bit(make_checkpoint):
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, load_in_8bit=True)
    assert set(weight_formats(model.model)) == {"int8"} and model.preset == "int8"
    plain = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, load_in_8bit=False, compile=False)
    assert set(weight_formats(plain.model)) == {"fp32"}


def test_nncf_on_model_model_then_save(make_checkpoint, tmp_path):
    # llm-inference-hf.rst: load_in_8bit=False, then model.model = compress_weights(model.model, INT4_SYM, 128, 0.8)
    from nncf import CompressWeightsMode, compress_weights

    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, load_in_8bit=False)
    model.model = compress_weights(model.model, mode=CompressWeightsMode.INT4_SYM, group_size=128, ratio=0.8)
    formats = weight_formats(model.model)
    assert formats["int4"] > 0 and formats["int8"] > 0
    tok = AutoTokenizer.from_pretrained(make_checkpoint())
    inputs = tok(PROMPTS[:1], return_tensors="pt")
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert model.last_engine == "optimum" and "model.model was changed" in model.last_engine_reason
    model.save_pretrained(tmp_path / "int4")
    again = OVModelForCausalLM.from_pretrained(tmp_path / "int4", compile=False)
    assert weight_formats(again.model) == formats
    assert again.ov_manifest.compression.weights == "int4"


def test_generate_reads_a_flag_not_the_graph_to_notice_a_replaced_model(make_checkpoint, monkeypatch):
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True)
    inputs = AutoTokenizer.from_pretrained(make_checkpoint())(PROMPTS[:1], return_tensors="pt")

    def walk(_):
        raise AssertionError("generate() walked the graph")

    monkeypatch.setattr(ov_causal.model.loader, "fingerprint", walk)
    monkeypatch.setattr(ov_causal.model.modeling, "fingerprint", walk)
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert model.last_engine == "genai" and not model.ov_model_replaced
    model.model = model.model
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert model.last_engine == "optimum" and "model.model was changed" in model.last_engine_reason


@pytest.mark.parametrize(
    "ov_config",
    [
        {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "32", "PERFORMANCE_HINT": "LATENCY"},
        {"KV_CACHE_PRECISION": "u8", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32", "PERFORMANCE_HINT": "LATENCY"},
    ],
)
def test_runtime_recipes_read_back_from_request(ov_config, make_export):
    # runtime-optimizations-and-lora.rst, read back as optimum users do: model.request.get_compiled_model()
    model = OVModelForCausalLM.from_pretrained(make_export(preset="int8"), ov_config=ov_config)
    compiled = model.request.get_compiled_model()
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    assert compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == 32
    if "KV_CACHE_PRECISION" in ov_config:
        assert str(compiled.get_property("KV_CACHE_PRECISION")) == "<Type: 'uint8_t'>"


def test_quick_start_pipeline_with_max_length(make_checkpoint):
    # white paper's quick start
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True)
    tokenizer = AutoTokenizer.from_pretrained(make_checkpoint())
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, max_length=50)
    results = pipe("My cat's favorite foods are")
    assert results[0]["generated_text"].startswith("My cat's favorite foods are")
    ids = pipe("My cat's favorite foods are", return_tensors=True)[0]["generated_token_ids"]
    assert len(tokenizer("My cat's favorite foods are")["input_ids"]) < len(ids) <= 50  # max_length counts the prompt


def test_quantization_config_is_honoured_exactly(make_checkpoint):
    config = OVWeightQuantizationConfig(bits=4, sym=True, group_size=64, ratio=0.8)
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, quantization_config=config,
                                               compile=False)
    c = model.ov_manifest.compression
    assert (c.weights, c.sym, c.group_size, c.ratio) == ("int4", True, 64, 0.8)
    formats = weight_formats(model.model)
    assert formats["int4"] > 0 and formats["int8"] > 0
    as_dict = AutoModelForCausalLM.from_pretrained(make_checkpoint(), quantization_config={"bits": 8}, compile=False)
    assert as_dict.preset == "int8" and set(weight_formats(as_dict.model)) == {"int8"}
    with pytest.raises(PresetError, match="ignored_scope"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), quantization_config=OVWeightQuantizationConfig(
            bits=4, ignored_scope={"names": ["x"]}))
    with pytest.raises(PresetError, match="always adjusts"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), quantization_config=OVWeightQuantizationConfig(
            bits=4, group_size_fallback="error"))
    with pytest.raises(PresetError, match="Hub dataset"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), quantization_config=OVWeightQuantizationConfig(
            bits=4, dataset="wikitext2", awq=True))


@pytest.mark.parametrize("option", ["int8", "int4_sym_g128", "int4_asym_g64"])
def test_white_paper_compression_option(option, make_checkpoint, tmp_path):
    model = OVModelForCausalLM.from_pretrained(make_checkpoint(), export=True, compression_option=option)
    model.save_pretrained(tmp_path / "out")
    formats = weight_formats(OVModelForCausalLM.from_pretrained(tmp_path / "out", compile=False).model)
    assert set(formats) == ({"int8"} if option == "int8" else {"int4", "int8"}) and model.preset == option


def test_two_different_compression_requests_are_an_error(make_checkpoint):
    with pytest.raises(PresetError, match="different compressions"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", compression_option="int4_sym_g128")
    with pytest.raises(PresetError, match="different compressions"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), load_in_8bit=True, preset="fp16")
    with pytest.raises(PresetError, match="Did you mean"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), compression_option="int4_sym_128")
    same = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", load_in_8bit=True, compile=False)
    assert same.preset == "int8"


def test_request_is_there_right_after_loading(make_export):
    model = OVModelForCausalLM.from_pretrained(make_export())
    assert model._genai is not None  # the GenAI engine compiled first ...
    compiled = model.request.get_compiled_model()  # ... and optimum's request still answers
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


def _tokenizer(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    return tok


def _ids(model, tok, prompts, **kwargs):
    out = pipeline("text-generation", model=model, tokenizer=tok)(prompts, return_tensors=True, **kwargs)
    return [o[0]["generated_token_ids"] for o in out]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fp32_with_the_f32_hint_matches_torch_without_a_runtime(arch, make_checkpoint, torch_model):
    greedy = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
    ov = AutoModelForCausalLM.from_pretrained(make_checkpoint(arch), preset="fp32", ov_config=EXACT)
    assert "KV_CACHE_PRECISION" not in ov.ov_config or ov.ov_config["KV_CACHE_PRECISION"] == "f32"
    assert ov.ov_config.get("DYNAMIC_QUANTIZATION_GROUP_SIZE", "0") == "0"
    tok = _tokenizer(make_checkpoint(arch))
    assert _ids(ov, tok, PROMPTS, **greedy) == _ids(torch_model(arch), tok, PROMPTS, **greedy)
    assert _ids(ov, tok, PROMPTS, batch_size=2, **greedy) == _ids(torch_model(arch), tok, PROMPTS, batch_size=2,
                                                                   **greedy)
    inputs = tok(PROMPTS, return_tensors="pt", padding=True)
    beams = dict(max_new_tokens=8, min_new_tokens=8, num_beams=3, do_sample=False)
    assert torch.equal(ov.generate(**inputs, **beams), torch_model(arch).generate(**inputs, **beams))


def test_unquantized_preset_alone_gets_no_quantized_kv_cache_and_chat_matches(make_checkpoint, torch_model):
    ov = AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), preset="fp32")
    assert ov.ov_runtime.name == "accuracy" and ov.ov_config["KV_CACHE_PRECISION"] == "f32"
    tok = _tokenizer(make_checkpoint("qwen2"))
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    chat = [{"role": "user", "content": "def parse(args):"}]
    greedy = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
    ours = pipeline("text-generation", model=ov, tokenizer=tok)(chat, **greedy)
    reference = pipeline("text-generation", model=torch_model("qwen2"), tokenizer=tok)(chat, **greedy)
    assert ours[0]["generated_text"] == reference[0]["generated_text"]
    quantized = AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), preset="int8", compile=False)
    assert quantized.ov_runtime.name == "latency"
    hinted = AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), preset="int8", ov_config=EXACT,
                                                  compile=False)
    assert hinted.ov_runtime.name == "accuracy"
    explicit = AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), preset="fp32", runtime="latency",
                                                    compile=False)
    assert explicit.ov_config["KV_CACHE_PRECISION"] == "u8"  # an explicit runtime still wins


def test_refused_optimum_keywords_say_why(make_checkpoint):
    with pytest.raises(ov_causal.OptionError, match="from_onnx"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), from_onnx=True)
    with pytest.raises(PresetError, match="weights only"):
        OVModelForCausalLM.from_pretrained(make_checkpoint(), quantization_config=optimum.intel.OVQuantizationConfig())
    assert nncf.__version__.startswith("3.")
