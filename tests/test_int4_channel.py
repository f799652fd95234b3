"""int4 with one scale per channel: the presets in the IR, tune's workloads, and the bytes a decode step reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ov_causal import PRESETS, AutoModelForCausalLM, Compression, OptionError, PresetError
from ov_causal.config.presets import CHANNEL_PRESETS
from ov_causal.model.run import DEMO_MODEL
from ov_causal.tools.reports import EvalReport, EvalRow
from ov_causal.tools.traffic import folder_weight_bytes, kv_bytes_per_token, weight_bytes_read
from ov_causal.tools.tune import ALL_CANDIDATES, ALL_DATA_AWARE_CANDIDATES, CANDIDATES, choose, tune
from ov_causal.tools.workloads import WORKLOADS

HELDOUT = DEMO_MODEL / "heldout.txt"
FAST = dict(max_tokens=1024, window=128, new_tokens=16, num_prompts=1, speed_runs=1)


def _scale_shapes(model):
    """Shape of the scale each int4 weight is multiplied with (Convert [-> Subtract zero point] -> Multiply)."""
    shapes = []
    for op in model.get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type().get_type_name() not in ("u4", "i4"):
            continue
        if len(op.shape) < 2 or op.shape[-1] == 1:  # a zero point, not a weight
            continue
        node = op
        while node.get_type_name() != "Multiply":
            node = next(iter(node.output(0).get_target_inputs())).get_node()
        scale = next(i.get_source_output().get_node() for i in node.inputs()
                     if i.get_source_output().get_node().get_type_name() == "Constant")
        shapes.append((tuple(op.shape), tuple(scale.shape)))
    return shapes


@pytest.mark.parametrize("name", ["int4_sym_channel", "int4_asym_channel", "int4_sym_channel_all"])
def test_per_channel_presets_store_one_scale_per_output_channel(name, make_export):
    model = AutoModelForCausalLM.from_pretrained(make_export(preset=name), compile=False)
    shapes = _scale_shapes(model.model)
    assert len(shapes) >= 2 * 7  # q, k, v, o, gate, up, down of two layers
    assert all(len(weight) == 2 and scale == (weight[0], 1) for weight, scale in shapes), shapes
    assert model.ov_manifest.compression.describe().startswith(
        f"int4 {'sym' if PRESETS[name].compression.sym else 'asym'} per-channel")


def test_grouped_preset_has_grouped_scales(make_export):
    """The check above can tell: a g64 export's scales have one entry per group of 64."""
    model = AutoModelForCausalLM.from_pretrained(make_export(preset="int4_sym_g64"), compile=False)
    assert all(len(weight) == 3 and scale == (weight[0], weight[1], 1) for weight, scale in _scale_shapes(model.model))


def test_all_layers_puts_the_lm_head_in_int4(make_export):
    plain = AutoModelForCausalLM.from_pretrained(make_export(preset="int4_sym_channel"), compile=False)
    every = AutoModelForCausalLM.from_pretrained(make_export(preset="int4_sym_channel_all"), compile=False)
    assert len(_scale_shapes(every.model)) > len(_scale_shapes(plain.model))
    assert weight_bytes_read(every.model) < weight_bytes_read(plain.model)


def test_channel_presets_and_bad_combinations():
    assert {p.name for p in CHANNEL_PRESETS} <= set(PRESETS)
    assert all(p.compression.group_size == -1 for p in CHANNEL_PRESETS)
    assert PRESETS["int4_sym_channel_r80"].compression.ratio == 0.8
    assert PRESETS["int4_sym_channel_gptq"].compression.data_aware
    with pytest.raises(PresetError, match="all_layers .* apply to int4 only"):
        Compression("int8", all_layers=True)
    with pytest.raises(PresetError, match="awq and gptq are alternatives"):
        Compression("int4", group_size=-1, awq=True, gptq=True)
    with pytest.raises(PresetError, match="data-aware: pass calibration="):
        AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="int4_sym_channel_gptq", compile=False)
    with pytest.raises(PresetError, match="data-aware: pass calibration="):
        AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="int4_sym_channel_awq", compile=False)


def test_tune_candidates_include_the_channel_presets():
    assert "int4_sym_channel" in CANDIDATES
    channel = {p.name for p in CHANNEL_PRESETS}
    assert channel <= set(ALL_CANDIDATES) | set(ALL_DATA_AWARE_CANDIDATES)
    assert all(PRESETS[p].compression.data_aware for p in ALL_DATA_AWARE_CANDIDATES)
    assert not any(PRESETS[p].compression.data_aware for p in ALL_CANDIDATES)


def _row(preset: str, ppl_change: float, decode: float, prefill: float, mib: float) -> EvalRow:
    return EvalRow(preset, preset, 10 * (1 + ppl_change), ppl_change, 0.9, 0.01, 8, 0.5, mib, decode, prefill)


FAKE = EvalReport("m", 1024, 7, 16, [
    _row("fp32", 0.0, 20.0, 900.0, 500.0),
    _row("int8", 0.001, 80.0, 2000.0, 130.0),  # prefills fast, decodes slower
    _row("int4_sym_channel", 0.02, 130.0, 700.0, 80.0),  # decodes fast, prefills slower
    _row("int4_sym_channel_all", 0.08, 150.0, 650.0, 70.0),  # fastest, over a 5% budget
])


def test_workload_changes_the_choice():
    """int8: 1024/2000 + 16/80 = 0.71 s for a long prompt, per-channel int4 1.59 s; for a long generation
    int8 3.22 s, int4 2.01 s. The fastest decoder (over budget) is never chosen."""
    assert choose(FAKE, 0.05, "speed") == ("int4_sym_channel", "int8")
    assert choose(FAKE, 0.05, "speed", "long-prompt")[0] == "int8"
    assert choose(FAKE, 0.05, "speed", "long-generation")[0] == "int4_sym_channel"
    assert choose(FAKE, 0.10, "speed", "long-generation")[0] == "int4_sym_channel_all"
    long_prompt = WORKLOADS["long-prompt"]
    assert long_prompt.time_to_answer(2000.0, 80.0) == pytest.approx(1024 / 2000 + 16 / 80)


def test_workload_errors():
    with pytest.raises(OptionError, match="workload='long_prompt' is not valid. Did you mean"):
        tune(DEMO_MODEL, 0.02, "speed", workload="long_prompt")
    with pytest.raises(OptionError, match="only the 'speed' objective"):
        tune(DEMO_MODEL, 0.02, "size", workload="chat")
    result = subprocess.run([sys.executable, "-m", "ov_causal", "tune", str(DEMO_MODEL), "--objective", "size",
                             "--workload", "chat"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "only --objective speed uses" in result.stderr


def test_tune_for_a_workload_measures_prefill(tmp_path):
    result = tune(DEMO_MODEL, 0.5, "speed", ("int8", "int4_sym_channel"), HELDOUT, workload="long-generation",
                  ov_cache_dir=tmp_path, **FAST)
    assert all(r.prefill_tokens_per_second > 0 for r in result.report.rows)
    times = result.times_to_answer()
    assert set(times) == {"fp32", "int8", "int4_sym_channel"} and all(t > 0 for t in times.values())
    assert result.choice == min(("int8", "int4_sym_channel"), key=times.get)
    assert "time to answer, long-generation (32-token prompt, 256 new tokens" in result.table()
    assert "for the long-generation workload" in result.table()
    assert result.to_dict()["workload"] == "long-generation"


def test_weight_bytes_match_the_checkpoint(make_checkpoint, make_export):
    """fp32: 4 bytes per MatMul weight (the untied embedding is gathered, not read whole; the rotary frequencies add
    a few bytes); int4 < int8 < fp32."""
    import torch
    from transformers import AutoModelForCausalLM as TorchModel

    torch_model = TorchModel.from_pretrained(make_checkpoint())
    linear = sum(m.weight.numel() for m in torch_model.modules() if isinstance(m, torch.nn.Linear))
    sizes = {p: folder_weight_bytes(make_export(preset=p)) for p in ("fp32", "int8", "int4_sym_channel")}
    assert 4 * linear <= sizes["fp32"] < 4 * linear + 1024
    int4_body = 0.5 * (linear - torch_model.lm_head.weight.numel()) + torch_model.lm_head.weight.numel()  # head int8
    assert linear < sizes["int8"] < 1.1 * linear and int4_body < sizes["int4_sym_channel"] < 1.1 * int4_body
    config = torch_model.config
    assert kv_bytes_per_token(make_export()) == 2 * config.num_hidden_layers * config.num_key_value_heads * (
        config.hidden_size // config.num_attention_heads)
    with pytest.raises(OptionError, match="precision='f8'"):
        kv_bytes_per_token(make_export(), "f8")


def test_cache_keys_of_earlier_exports_are_unchanged():
    """all_layers joins the cache key only when set: exports made before the field existed are still hits."""
    from ov_causal.convert.loading import _key_fields

    assert "all_layers" not in _key_fields(Compression("int8"))
    assert _key_fields(Compression("int4", sym=True, group_size=-1, all_layers=True))["all_layers"] is True
