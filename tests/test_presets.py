"""Compression presets checked in the IR; runtime presets checked on the compiled model."""

from __future__ import annotations

import pytest

from ov_causal import PRESETS, AutoModelForCausalLM, Compression, Preset, get_runtime
from ov_causal.config.presets import ONE_BILLION, default_compression
from ov_causal.convert.ir import weight_formats
from ov_causal.model.run import DEMO_MODEL


def _int4_weights(model):
    """(element type, group size) of every int4 weight constant of an openvino.Model: [out, groups, group] is
    grouped, [out, in] one group per channel (-1); zero points end in a dimension of 1."""
    return {
        (op.get_element_type().get_type_name(), op.shape[-1] if len(op.shape) == 3 else -1)
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("u4", "i4")
        and len(op.shape) in (2, 3) and op.shape[-1] > 1
    }


@pytest.mark.parametrize("name", list(PRESETS))
def test_compression_preset_in_ir(name, make_export):
    data_aware = PRESETS[name].compression.data_aware
    calibration = {"calibration": str(DEMO_MODEL / "calibration.txt")} if data_aware else {}
    model = AutoModelForCausalLM.from_pretrained(make_export(preset=name, **calibration), compile=False)
    formats = weight_formats(model.model)
    assert model.ov_manifest.preset == name
    if name in ("fp32", "fp16"):
        assert set(formats) == {name}, formats
    elif name == "int8":
        assert set(formats) == {"int8"}, formats
    else:
        compression = PRESETS[name].compression
        # NNCF keeps the embedding and the output projection in int8 (all_layers: int4 too); other matmuls int4.
        assert set(formats) <= {"int4", "int8"}, formats
        if compression.ratio == 1:
            assert formats["int4"] >= 2 * 7, formats
        else:  # the share of the parameters not in int4 is in int8 (the backup), beside the embedding and head
            assert formats["int4"] >= 2 and formats["int8"] > 2, formats
        assert ("int8" in formats) is not compression.all_layers, formats
        expected_type = "i4" if compression.sym else "u4"
        assert _int4_weights(model.model) == {(expected_type, compression.group_size)}


def test_ratio_and_group_size_overrides(make_export):
    full_model = AutoModelForCausalLM.from_pretrained(make_export(preset="int4_asym_g64"), compile=False)
    full = weight_formats(full_model.model)
    mixed_folder = make_export(preset="int4_asym_g128", ratio=0.5, group_size=64)
    mixed = AutoModelForCausalLM.from_pretrained(mixed_folder, compile=False)
    formats = weight_formats(mixed.model)
    assert 0 < formats["int4"] < full["int4"]
    assert formats["int8"] > full["int8"]
    assert _int4_weights(mixed.model) == {("u4", 64)}
    assert mixed.ov_manifest.compression == Compression("int4", sym=False, group_size=64, ratio=0.5)


def test_preset_and_compression_objects(make_checkpoint):
    custom = Preset("my-int4", Compression("int4", sym=True, group_size=64), runtime=get_runtime("accuracy"))
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=custom, compile=False)
    assert model.ov_manifest.preset == "my-int4"
    assert model.ov_runtime.name == "accuracy"
    assert _int4_weights(model.model) == {("i4", 64)}
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=Compression("int8"), compile=False)
    assert set(weight_formats(model.model)) == {"int8"}


def test_default_is_int8_above_one_billion_parameters(make_checkpoint, monkeypatch):
    assert default_compression(ONE_BILLION + 1)[0] == "int8"
    assert default_compression(ONE_BILLION)[0] == "fp32"
    small = AutoModelForCausalLM.from_pretrained(make_checkpoint(), compile=False)
    assert small.ov_manifest.preset == "fp32" and set(weight_formats(small.model)) == {"fp32"}
    monkeypatch.setattr("ov_causal.convert.loading.count_parameters", lambda folder: 7 * ONE_BILLION)
    big = AutoModelForCausalLM.from_pretrained(make_checkpoint(), compile=False)
    assert big.ov_manifest.preset == "int8" and set(weight_formats(big.model)) == {"int8"}


def test_quantize_an_uncompressed_export_on_load(make_export):
    folder = make_export()
    model = AutoModelForCausalLM.from_pretrained(folder, preset="int8", compile=False)
    assert set(weight_formats(model.model)) == {"int8"}
    assert model.ov_manifest.preset == "int8"
    untouched = AutoModelForCausalLM.from_pretrained(folder, compile=False)
    assert set(weight_formats(untouched.model)) == {"fp32"}


def _properties(model, *keys):
    compiled = model.compiled_model
    return {key: str(compiled.get_property(key)) for key in keys}


KEYS = ("PERFORMANCE_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE", "KV_CACHE_PRECISION", "INFERENCE_PRECISION_HINT")


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ("latency", {"PERFORMANCE_HINT": "LATENCY", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}),
        ("throughput", {"PERFORMANCE_HINT": "THROUGHPUT", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}),
        ("accuracy", {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "INFERENCE_PRECISION_HINT": "<Type: 'float32'>"}),
        ("memory", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}),
    ],
)
def test_runtime_preset_on_compiled_model(runtime, expected, make_export):
    model = AutoModelForCausalLM.from_pretrained(make_export(preset="int8"), runtime=runtime)
    assert _properties(model, *expected) == expected
    kv = str(model.compiled_model.get_property("KV_CACHE_PRECISION"))
    assert kv == ("<Type: 'float32'>" if runtime == "accuracy" else "<Type: 'uint8_t'>")


def test_dq_group_size_and_raw_ov_config_win_key_by_key(make_export):
    model = AutoModelForCausalLM.from_pretrained(
        make_export(preset="int8"), runtime="latency", dq_group_size=64, ov_config={"KV_CACHE_PRECISION": "f16"}
    )
    props = _properties(model, "PERFORMANCE_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE", "KV_CACHE_PRECISION")
    assert props == {
        "PERFORMANCE_HINT": "LATENCY",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": "64",
        "KV_CACHE_PRECISION": "<Type: 'float16'>",
    }
