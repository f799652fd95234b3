"""Run-time LoRA adapters: transformers' PEFT methods on our models, exact against fused exports and PEFT in torch,
switching without leaks, and bad adapters refused with the model still working."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ov_causal import AutoModelForCausalLM
from ov_causal.errors import LoraError

from .test_lora import _make_adapter, _peft_reference

PROMPT = ["def parse(args):\n    return"]
GREEDY = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)
MIX = {"a": 0.7, "b": 0.3}


@pytest.fixture(scope="module")
def adapters(make_checkpoint, tmp_path_factory):
    """a: rank 4 with lora_alpha 8 (scale 2, which GenAI alone would drop); b: rank 8, other targets included."""
    root = tmp_path_factory.mktemp("runtime-adapters")
    return {
        "a": _make_adapter(make_checkpoint, root / "a", seed=1),
        "b": _make_adapter(make_checkpoint, root / "b", seed=2, rank=8,
                           targets=("q_proj", "k_proj", "up_proj", "o_proj")),
    }


@pytest.fixture(scope="module")
def fused(make_checkpoint, adapters, tmp_path_factory):
    """Greedy outputs of the base and of each fused export (lora=), f32 runtime."""
    cache = tmp_path_factory.mktemp("fused-cache")
    specs = {"base": None, "a": adapters["a"], "b": adapters["b"],
             "mix": {str(adapters["a"]): MIX["a"], str(adapters["b"]): MIX["b"]}}
    outputs = {}
    for name, lora in specs.items():
        model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=lora, runtime="accuracy",
                                                     ov_cache_dir=cache)
        outputs[name] = model.generate(**_inputs(model), **GREEDY)
    assert len({tuple(o[0].tolist()) for o in outputs.values()}) == 4, "each adapter changes the greedy output"
    return outputs


@pytest.fixture
def model(make_export, adapters):
    model = AutoModelForCausalLM.from_pretrained(make_export(), runtime="accuracy")
    model.load_adapter(adapters["a"], "a")
    model.load_adapter(adapters["b"], adapter_name="b")
    return model


def _inputs(model):
    return model.tokenizer(PROMPT, return_tensors="pt")


def _greedy(model):
    return model.generate(**_inputs(model), **GREEDY)


def _which(output, fused):
    return [name for name, reference in fused.items() if torch.equal(reference, output)]


def test_peft_method_names_are_transformers(make_export):
    from transformers.integrations.peft import PeftAdapterMixin

    names = ("load_adapter", "add_adapter", "set_adapter", "disable_adapters", "enable_adapters", "active_adapters",
             "delete_adapter")
    model = AutoModelForCausalLM.from_pretrained(make_export(), compile=False)
    for name in names:
        assert callable(getattr(model, name)) and hasattr(PeftAdapterMixin, name)
    with pytest.raises(LoraError, match="No adapter loaded"):
        model.active_adapters()
    with pytest.raises(LoraError, match="No adapter loaded"):
        model.set_adapter("a")


def test_switching_back_and_forth_is_exact(model, fused):
    assert model.active_adapters() == ["a"], "as in transformers: the first adapter loaded is active"
    sequence = ["a", "b", MIX, "a", ["a"], "b", MIX]
    for spec in sequence:
        model.set_adapter(spec)
        expected = "mix" if spec is MIX else (spec if isinstance(spec, str) else spec[0])
        assert _which(_greedy(model), fused) == [expected], spec
    model.disable_adapters()
    assert model.active_adapters() == ["a", "b"] and model.active_adapter_weights() == {}
    assert _which(_greedy(model), fused) == ["base"]
    model.enable_adapters()
    assert _which(_greedy(model), fused) == ["mix"]
    assert model.last_engine == "genai"


@pytest.mark.parametrize("mode", ["fuse", "static"])
def test_fixed_modes_rebuild_and_stay_exact(model, fused, mode):
    model.adapter_mode = mode
    for spec, expected in (("b", "b"), (MIX, "mix"), ("a", "a")):
        model.set_adapter(spec)
        assert _which(_greedy(model), fused) == [expected], (mode, spec)
    model.disable_adapters()
    assert _which(_greedy(model), fused) == ["base"]
    with pytest.raises(LoraError, match="adapter_mode='fused' is not valid.*Did you mean 'fuse'"):
        model.adapter_mode = "fused"


def test_matches_peft_in_torch(model, make_checkpoint, adapters):
    """Greedy tokens equal PEFT's, and the engine's log-probability of them is PEFT's (f32 runtime)."""
    import openvino_genai

    from ov_causal.model.backends import tokenized_inputs

    for spec, paths, weights in (("a", ["a"], None), (MIX, ["a", "b"], [0.7, 0.3])):
        reference = _peft_reference(make_checkpoint, [adapters[p] for p in paths], weights)
        model.set_adapter(spec)
        inputs = _inputs(model)
        ours = _greedy(model)
        with torch.no_grad():
            assert torch.equal(ours, reference.generate(**inputs, **GREEDY))
            logits = reference(ours[:, :-1]).logits.log_softmax(-1)
        n = inputs["input_ids"].shape[1]
        expected = logits[0, n - 1:].gather(-1, ours[0, n:, None]).sum().item()
        config = openvino_genai.GenerationConfig(max_new_tokens=GREEDY["max_new_tokens"], logprobs=1)
        engine = model._genai
        config.adapters = model.adapter_registry.call_config(engine._plain_key()[1])
        result = engine.pipeline().generate(tokenized_inputs(inputs["input_ids"]), config)
        assert list(result.tokens[0]) == ours[0, n:].tolist()
        assert result.scores[0] == pytest.approx(expected, abs=2e-3)


def test_delete_and_reload(model, fused, adapters):
    model.set_adapter(["a", "b"])
    model.delete_adapter("b")  # the rest of the active set stays, with its weights
    assert model.active_adapters() == ["a"] and list(model.peft_config) == ["a"]
    assert model.peft_config["a"].r == 4
    assert _which(_greedy(model), fused) == ["a"]
    with pytest.raises(LoraError, match="already exists"):
        model.load_adapter(adapters["b"], "a")
    model.load_adapter(adapters["b"], "a", hotswap=True)
    assert _which(_greedy(model), fused) == ["b"]
    model.delete_adapter(["a"])
    assert _which(_greedy(model), fused) == ["base"] and not model._hf_peft_config_loaded


def test_transformers_loop_refuses_with_an_active_adapter(model, fused):
    inputs = _inputs(model)
    with pytest.raises(LoraError, match="forward\\(\\) \\(logits\\).*disable_adapters\\(\\)"):
        model(**inputs)
    with pytest.raises(LoraError, match="needs the transformers loop .*output_scores"):
        model.generate(**inputs, max_new_tokens=3, output_scores=True, return_dict_in_generate=True)
    with pytest.raises(LoraError, match="prompt lookup"):
        model.generate(**inputs, max_new_tokens=3, prompt_lookup_num_tokens=2)
    model.disable_adapters()
    assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]
    model.enable_adapters()
    assert _which(_greedy(model), fused) == ["a"]


def test_training_calls_are_refused(model):
    from peft import LoraConfig

    with pytest.raises(LoraError, match="inference only.*load_adapter"):
        model.add_adapter(LoraConfig(r=2), "new")
    with pytest.raises(LoraError, match="is_trainable"):
        model.load_adapter("x", "new", is_trainable=True)
    with pytest.raises(ValueError, match="unknown keyword.*bogus"):
        model.load_adapter("x", "new", bogus=1)


def test_summary_lists_loaded_and_active(model):
    model.set_adapter(MIX)
    summary = dict(model.summary())
    assert summary["run-time adapters"].startswith("a (r=4") and "b (r=8" in summary["run-time adapters"]
    assert summary["active adapters"] == "a x0.7, b x0.3"
    model.disable_adapters()
    assert dict(model.summary())["active adapters"].startswith("none: disabled")
    assert "active adapters" in model._repr_html_()


# --- bad input: LoraError naming the file and the problem; the model keeps its adapters and output ---


def _copy(adapter, tmp_path, name):
    return shutil.copytree(adapter, tmp_path / name)


def _edit_tensors(folder, change):
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def _edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _nan(tensors):
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key][0, 0] = float("nan")


@pytest.mark.parametrize("case, match", [
    ("nan", "adapter_model.safetensors holds NaN or infinite values"),
    ("rank", "rank 4 .*says r=5"),
    ("alpha", "lora_alpha=0"),
    ("dora", "use_dora.*cannot apply"),
])
def test_bad_adapter_files(model, fused, adapters, tmp_path, case, match):
    folder = _copy(adapters["a"], tmp_path, case)
    if case == "nan":
        _edit_tensors(folder, _nan)
    else:
        _edit_config(folder, **{"rank": {"r": 5}, "alpha": {"lora_alpha": 0}, "dora": {"use_dora": True}}[case])
    with pytest.raises(LoraError, match=match) as error:
        model.load_adapter(folder, "bad")
    assert str(folder) in str(error.value)
    assert "bad" not in model.peft_config and _which(_greedy(model), fused) == ["a"]


def test_adapter_for_another_base(model, fused, make_checkpoint, odd_checkpoint, tmp_path):
    gpt2 = _make_adapter(lambda: make_checkpoint("gpt2"), tmp_path / "gpt2", seed=5, targets=("c_attn",))
    with pytest.raises(LoraError, match="gpt2.*module\\(s\\) the base model lacks, e.g. 'transformer.h.0.attn.c_attn'"):
        model.load_adapter(gpt2, "gpt2")
    narrow = _make_adapter(lambda: odd_checkpoint, tmp_path / "odd", seed=6)
    with pytest.raises(LoraError, match="odd.*lora_A \\(4, \\d+\\).*maps \\d+ -> \\d+ features"):
        model.load_adapter(narrow, "odd")
    assert list(model.peft_config) == ["a", "b"] and _which(_greedy(model), fused) == ["a"]


def test_unknown_name_lists_the_loaded_ones(model):
    with pytest.raises(LoraError, match="Adapter 'bb' is not loaded. Did you mean 'b'\\? Loaded adapters: 'a', 'b'"):
        model.set_adapter(["a", "bb"])
    with pytest.raises(LoraError, match="weight of adapter 'b' is nan"):
        model.set_adapter({"a": 1.0, "b": float("nan")})
    assert model.active_adapters() == ["a"]


def test_pickle_adapter_needs_allow_pickle(model, make_checkpoint, fused, tmp_path):
    pickled = _make_adapter(make_checkpoint, tmp_path / "pickled", seed=1, safe=False)  # a's weights, as .bin
    with pytest.raises(LoraError, match="pickle file.*allow_pickle=True"):
        model.load_adapter(pickled, "p")
    model.load_adapter(pickled, "p", allow_pickle=True)
    model.set_adapter("p")
    assert _which(_greedy(model), fused) == ["a"]


def test_loading_while_generate_runs_is_refused(model, fused, adapters):
    from transformers import TextStreamer

    errors = []

    class LoadMidway(TextStreamer):
        def put(self, value):
            if not errors and value.numel() == 1:
                try:
                    model.load_adapter(adapters["b"], "late")
                except LoraError as exc:
                    errors.append(exc)

        def end(self):
            pass

    out = model.generate(**_inputs(model), streamer=LoadMidway(model.tokenizer), **GREEDY)
    assert errors and "while generate() runs" in str(errors[0])
    assert torch.equal(out, fused["a"]) and "late" not in model.peft_config
    model.load_adapter(adapters["b"], "late")  # between calls it loads
    assert "late" in model.peft_config


def test_fuse_mode_needs_uncompressed_weights(make_export, adapters):
    model = AutoModelForCausalLM.from_pretrained(make_export(preset="int8"))
    model.load_adapter(adapters["a"], "a")
    before = model.generate(**_inputs(model), **GREEDY)
    with pytest.raises(LoraError, match="adapter_mode='fuse' needs fp32/fp16 weights.*int8.*'dynamic' or 'static'"):
        model.adapter_mode = "fuse"
    assert model.adapter_mode == "dynamic" and torch.equal(model.generate(**_inputs(model), **GREEDY), before)
