"""Real shapes: int4 group sizes that do not divide a layer's channels fall back (smaller group, else int8)."""

from __future__ import annotations

import json

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.config.presets import Compression
from ov_causal.convert.manifest import MANIFEST_FILE, Manifest
from ov_causal.errors import ExportError
from ov_causal.model.summary import model_summary

# The odd_checkpoint llama: attention and gate/up read 96 channels (int4 g32), down_proj reads 688 (int8).
LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
          "mlp.up_proj")
EXPECTED = {
    **{f"model.layers.{i}.{name}": "int4 g32" for i in range(2) for name in LAYERS},
    **{f"model.layers.{i}.mlp.down_proj": "int8" for i in range(2)},
}


@pytest.fixture(scope="module")
def odd_export(tmp_path_factory, odd_checkpoint):
    """The odd model exported (fp32) and saved, to compress with other presets quickly."""
    model = AutoModelForCausalLM.from_pretrained(odd_checkpoint, preset="fp32", compile=False)
    out = tmp_path_factory.mktemp("ov-odd-fp32")
    model.save_pretrained(out)
    return out


def test_int4_checkpoint_export_falls_back_and_records_it(odd_checkpoint, tmp_path):
    from ov_causal.convert.ir import layer_weights

    model = AutoModelForCausalLM.from_pretrained(odd_checkpoint, preset="int4_sym_g64", compile=False)
    assert model.ov_manifest.fallback == EXPECTED
    assert model.ov_manifest.fallback_summary() == "14 layers: int4 g32 (12), int8 (2)"
    weights = layer_weights(model.model)  # counted in the IR, not taken from the manifest
    assert sum(w.format == "int4" and w.group_size == 32 for w in weights.values()) == 12
    assert [name for name, w in weights.items() if w.format == "int8"] == [
        "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "lm_head"
    ]
    assert not any(w.format == "fp32" for w in weights.values())
    # the cache entry's manifest holds it, and so does a saved folder, and a reload reads it back
    entry_manifest = json.loads((model.model_save_dir / MANIFEST_FILE).read_text())
    assert entry_manifest["fallback"] == EXPECTED
    model.save_pretrained(tmp_path)
    assert Manifest.read(tmp_path).fallback == EXPECTED
    assert AutoModelForCausalLM.from_pretrained(tmp_path, compile=False).ov_manifest.fallback == EXPECTED


@pytest.mark.parametrize("preset", ["int4_asym_g128", "int4_sym_g128"])
def test_int4_export_folder_falls_back(odd_export, preset):
    model = AutoModelForCausalLM.from_pretrained(odd_export, preset=preset, compile=False)
    assert model.ov_manifest.fallback == EXPECTED
    assert model.ov_manifest.compression.group_size == 128  # what was asked stays recorded
    fields = dict(model_summary(model))
    assert fields["group-size fallback"].startswith("14 layers: int4 g32 (12), int8 (2): model.layers.0.")


def test_fallback_model_generates(odd_export):
    import torch

    model = AutoModelForCausalLM.from_pretrained(odd_export, preset="int4_sym_g64")
    out = model.generate(input_ids=torch.tensor([[5, 6, 7, 8]]), max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 9)
    assert "group-size fallback" in model._repr_html_()
    assert "group_size_fallback='" in repr(model) and "int8 (" in repr(model)


def test_divisible_model_has_no_fallback(make_export):
    model = AutoModelForCausalLM.from_pretrained(make_export("llama", preset="int4_sym_g64"), compile=False)
    assert model.ov_manifest.fallback == {}
    assert model.ov_manifest.fallback_summary() == ""
    assert "group_size_fallback" not in repr(model)
    assert dict(model_summary(model))["group-size fallback"].startswith("none")


def test_ratio_int8_layers_are_not_fallback(odd_export):
    """With ratio < 1, layers NNCF puts in int8 by choice are not reported; those it could not group still are."""
    model = AutoModelForCausalLM.from_pretrained(
        odd_export, preset=Compression("int4", group_size=64, ratio=0.5), compile=False
    )
    from ov_causal.convert.ir import layer_weights

    fallback = model.ov_manifest.fallback
    weights = layer_weights(model.model)
    assert {n for n, v in fallback.items() if v == "int8"} == {f"model.layers.{i}.mlp.down_proj" for i in range(2)}
    assert {n for n, v in fallback.items() if v != "int8"} == {
        n for n, w in weights.items() if w.format == "int4"
    }
    assert any(w.format == "int8" for n, w in weights.items() if n not in fallback and n != "lm_head")


def test_old_manifest_without_fallback_loads(tmp_path):
    manifest = Manifest("some/model", "int4_asym_g128", Compression("int4"), True)
    data = manifest.to_json()
    del data["fallback"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    assert Manifest.read(tmp_path).fallback == {}


def test_int4_layout_reports_the_requested_group(odd_export):
    from ov_causal.convert.ir import int4_layout, layer_weights

    model = AutoModelForCausalLM.from_pretrained(odd_export, preset="int4_asym_g64", compile=False)
    assert int4_layout(model.model) == (False, 32)  # every int4 layer fell back to g32: the largest there is
    assert {w.group_size for w in layer_weights(model.model).values() if w.format == "int4"} == {32}


def test_nncf_failure_is_a_short_export_error(odd_checkpoint, tmp_path, monkeypatch):
    import nncf

    layers = "\n\t".join(f'"__module.model.layers.{i}.mlp.up_proj/aten::linear/MatMul" (channel size: 576)'
                         for i in range(200))

    def fail(*args, **kwargs):
        raise nncf.InvalidGroupSizeError(f"Failed to apply group-wise quantization with group size value 128.\n"
                                         f"Ensure that ...\nFailed nodes:\n\t{layers}")

    monkeypatch.setattr(nncf, "compress_weights", fail)
    with pytest.raises(ExportError) as info:
        AutoModelForCausalLM.from_pretrained(odd_checkpoint, preset="int4_asym_g128", ov_cache_dir=tmp_path)
    message = str(info.value)
    assert "InvalidGroupSizeError" in message and "int4 asym g128" in message
    assert len(message) < 1200 and message.count("\n") < 5
    assert "more lines" in message
    assert not [p for p in (tmp_path / "entries").iterdir()]  # nothing half-written in the cache
