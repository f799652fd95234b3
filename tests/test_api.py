"""The transformers-facing API: habit keywords, pipeline(), device, native access, lazy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openvino
import pytest

import ov_causal
from ov_causal import AutoModelForCausalLM, OptionError
from ov_causal.convert.ir import weight_formats


def test_habit_keywords_applied_or_ignored_with_warning(make_checkpoint):
    with pytest.warns(UserWarning, match="ignores device_map=") as record:
        model = AutoModelForCausalLM.from_pretrained(
            make_checkpoint(), torch_dtype="float16", device_map="auto", low_cpu_mem_usage=True,
            trust_remote_code=False, revision="main", compile=False,
        )
    assert any("low_cpu_mem_usage" in str(w.message) for w in record)
    assert model.ov_manifest.preset == "fp16" and set(weight_formats(model.model)) == {"fp16"}
    with pytest.warns(UserWarning, match="preset='int8' sets the weights"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), dtype="bfloat16", preset="int8", compile=False)
    with pytest.raises(OptionError, match="dtype='int3'"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), dtype="int3")


def test_ov_causal_pipeline_loads_text_generation_and_passes_other_tasks(make_checkpoint, monkeypatch):
    pipe = ov_causal.pipeline("text-generation", str(make_checkpoint()), preset="int8", runtime="accuracy")
    assert pipe.model.ov_manifest.preset == "int8"
    out = pipe("def main(argv):", max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith("def main(argv):")
    import transformers

    calls = []
    monkeypatch.setattr(transformers, "pipeline", lambda task, **kw: calls.append((task, kw)) or "hf")
    assert ov_causal.pipeline("fill-mask", model="bert-base", top_k=3) == "hf"
    assert calls == [("fill-mask", {"model": "bert-base", "tokenizer": None, "top_k": 3})]
    with pytest.raises(OptionError, match="only apply to task='text-generation'"):
        ov_causal.pipeline("fill-mask", model="bert-base", preset="int8")
    with pytest.raises(OptionError, match="torch device"):
        ov_causal.pipeline("text-generation", str(make_checkpoint()), device="cuda:0")


def test_gpu_device_passes_through_to_openvino(make_export, monkeypatch):
    monkeypatch.setattr("ov_causal.config.options.available_devices", lambda: ["CPU", "GPU.0", "GPU.1"])
    model = AutoModelForCausalLM.from_pretrained(make_export(), device="gpu", compile=False)
    assert model._device == "GPU"
    assert model.to("GPU.1")._device == "GPU.1"
    assert model.to("AUTO:GPU,CPU")._device == "AUTO:GPU,CPU"
    assert model.request is None


def test_native_access_and_deferred_compilation(make_export):
    model = AutoModelForCausalLM.from_pretrained(make_export(), compile=False)
    assert isinstance(model.model, openvino.Model)
    assert model.request is None and model.compiled_model is None
    model.compile()
    assert isinstance(model.compiled_model, openvino.CompiledModel)
    assert isinstance(model, ov_causal.OVCausalLM)
    assert "preset='fp32'" in repr(model)


def test_phi3_gets_optimum_class_and_our_behaviour(make_export):
    from optimum.intel.openvino.modeling_decoder import OVPhi3ForCausalLM

    model = AutoModelForCausalLM.from_pretrained(make_export("phi3"), compile=False)
    assert isinstance(model, OVPhi3ForCausalLM) and isinstance(model, ov_causal.OVCausalLM)
    assert type(model).__name__ == "OVCausalPhi3ForCausalLM"
    with pytest.raises(ov_causal.DeviceError):
        model.to("NPU")


def test_import_is_cheap():
    heavy = "('torch', 'openvino', 'optimum', 'transformers', 'nncf')"
    code = f"import sys, ov_causal; dir(ov_causal); print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dir_lists_the_public_names_lazy_ones_included():
    names = dir(ov_causal)
    assert {"AutoModelForCausalLM", "OVModelForCausalLM", "pipeline", "generate", "fuse_lora"} <= set(names)
    assert names == sorted(names) and set(ov_causal.__all__) <= set(names)
    assert "import_module" not in names and "OVCausalLM" not in names  # no helpers, no earlier names


@pytest.mark.parametrize("name", ov_causal.__all__)
def test_each_public_name_resolves(name):
    value = getattr(ov_causal, name)
    assert getattr(value, "__name__", name) == name or name in ("PRESETS", "RUNTIMES")


def test_type_checking_block_names_every_lazy_name():
    """IDEs and the docs read the ``if TYPE_CHECKING:`` imports; each lazy name is there, from its real module."""
    import ast

    tree = ast.parse(Path(ov_causal.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {(f"ov_causal.{n.module}", a.name) for n in block.body for a in n.names}
    assert seen == {(module, name) for name, module in ov_causal._LAZY.items()}


def test_hub_id_is_downloaded_with_the_users_revision_and_token(make_checkpoint, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(make_checkpoint())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = AutoModelForCausalLM.from_pretrained("org/tiny-llama", revision="v1", token="secret", compile=False)
    assert calls[0][0] == "org/tiny-llama"
    assert calls[0][1]["revision"] == "v1" and calls[0][1]["token"] == "secret"
    assert model.ov_manifest.source == "org/tiny-llama"


def test_use_cache_false_exports_without_kv_cache(make_checkpoint):
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), use_cache=False, runtime="accuracy")
    assert not model.use_cache and not model.stateful
    inputs = model.tokenizer(["def f(x):"], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
