"""LoRA fusion: PEFT adapters merged before export match PEFT in torch; bad adapters are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ov_causal import AutoModelForCausalLM, ModelSourceError, UnsupportedModelError
from ov_causal.convert.cache_entries import list_entries
from ov_causal.convert.lora import LoraError, fuse_lora

PROMPT = ["def parse(args):\n    return"]
GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)


def _base(make_checkpoint):
    from transformers import AutoModelForCausalLM as TorchModel

    return TorchModel.from_pretrained(make_checkpoint(), dtype="float32").eval()


def _make_adapter(make_checkpoint, out, seed, rank=4, safe=True, targets=("q_proj", "v_proj", "down_proj")):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    model = get_peft_model(_base(make_checkpoint), config)
    model.save_pretrained(out, safe_serialization=safe)
    return out


@pytest.fixture(scope="module")
def adapters(make_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": _make_adapter(make_checkpoint, root / "a", seed=1),
        "b": _make_adapter(make_checkpoint, root / "b", seed=2, rank=8),
    }


def _peft_reference(make_checkpoint, adapters, weights=None):
    from peft import PeftModel

    model = PeftModel.from_pretrained(_base(make_checkpoint), adapters[0], adapter_name="x0")
    for i, path in enumerate(adapters[1:], 1):
        model.load_adapter(path, adapter_name=f"x{i}")
    if weights is not None:
        model.add_weighted_adapter([f"x{i}" for i in range(len(adapters))], weights, "mix", combination_type="cat")
        model.set_adapter("mix")
    return model.eval()


def _compare(ours, reference):
    """Logits within tolerance and identical greedy tokens."""
    inputs = ours.tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, reference(**inputs).logits, atol=5e-4, rtol=1e-4)
        assert torch.equal(ours.generate(**inputs, **GREEDY), reference.generate(**inputs, **GREEDY))


def test_one_adapter_fused_matches_peft(make_checkpoint, adapters, tmp_path):
    ours = AutoModelForCausalLM.from_pretrained(
        make_checkpoint(), lora=adapters["a"], runtime="accuracy", ov_cache_dir=tmp_path
    )
    reference = _peft_reference(make_checkpoint, [adapters["a"]])
    _compare(ours, reference)
    plain = AutoModelForCausalLM.from_pretrained(make_checkpoint(), runtime="accuracy", ov_cache_dir=tmp_path)
    inputs = ours.tokenizer(PROMPT, return_tensors="pt")
    assert (plain(**inputs).logits - ours(**inputs).logits).abs().max() > 1e-2, "the adapter changed nothing"
    assert ours.ov_manifest.adapters == [{"path": str(adapters["a"]), "weight": 1.0}]


def test_weighted_adapters_match_peft_weighted_adapter(make_checkpoint, adapters, tmp_path):
    mix = {str(adapters["a"]): 0.7, str(adapters["b"]): 0.3}
    ours = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=mix, runtime="accuracy", ov_cache_dir=tmp_path)
    reference = _peft_reference(make_checkpoint, [adapters["a"], adapters["b"]], [0.7, 0.3])
    _compare(ours, reference)
    again = AutoModelForCausalLM.from_pretrained(
        make_checkpoint(), lora=[(adapters["a"], 0.7), (adapters["b"], 0.3)], ov_cache_dir=tmp_path, compile=False
    )
    assert again.ov_cache_hit is True
    other = AutoModelForCausalLM.from_pretrained(
        make_checkpoint(), lora={str(adapters["a"]): 0.5, str(adapters["b"]): 0.5}, ov_cache_dir=tmp_path,
        compile=False,
    )
    assert other.ov_cache_hit is False


def test_fuse_lora_writes_the_fused_checkpoint(make_checkpoint, adapters, tmp_path):
    from transformers import AutoModelForCausalLM as TorchModel

    out = fuse_lora(make_checkpoint(), adapters["a"], tmp_path / "fused")
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
    fused = TorchModel.from_pretrained(out, dtype="float32").eval()
    reference = _peft_reference(make_checkpoint, [adapters["a"]])
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, reference(input_ids=ids).logits, atol=1e-4, rtol=1e-4)


def test_fuse_lora_command(make_checkpoint, adapters, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ov_causal", "fuse-lora", str(make_checkpoint()), f"{adapters['a']}=0.5",
         f"{adapters['b']}=0.5", "--out", str(tmp_path / "cli-fused")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli-fused" / "config.json").is_file()


def test_pickle_adapter_needs_explicit_opt_in(make_checkpoint, tmp_path):
    adapter = _make_adapter(make_checkpoint, tmp_path / "pickled", seed=3, safe=False)
    assert (adapter / "adapter_model.bin").is_file()
    with pytest.raises(LoraError, match="pickle file: loading it can run code.*lora_allow_pickle=True"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=adapter, ov_cache_dir=tmp_path / "c")
    model = AutoModelForCausalLM.from_pretrained(
        make_checkpoint(), lora=adapter, lora_allow_pickle=True, ov_cache_dir=tmp_path / "c", compile=False
    )
    assert model.ov_manifest.adapters[0]["path"] == str(adapter)


def _no_entries(root):
    entries = root / "entries"
    return not entries.exists() or not list(entries.iterdir())


def test_adapter_for_another_base(make_checkpoint, tmp_path):
    """A qwen2 adapter targets gate_proj, which gpt2 does not have."""
    wrong_shape = _make_adapter(lambda: make_checkpoint("qwen2"), tmp_path / "qwen", seed=4, targets=("gate_proj",))
    with pytest.raises(LoraError, match="does not fit the base model"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint("gpt2"), lora=wrong_shape, ov_cache_dir=tmp_path / "c")
    assert _no_entries(tmp_path / "c")


def test_missing_adapter_and_bad_weights(make_checkpoint, adapters, tmp_path):
    with pytest.raises(ModelSourceError, match="adapter folder .* does not exist"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=tmp_path / "nope")
    for bad in ({str(adapters["a"]): -1.0}, {str(adapters["a"]): 0.0}, {str(adapters["a"]): float("nan")},
                {str(adapters["a"]): "half"}, []):
        with pytest.raises(LoraError):
            AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=bad, ov_cache_dir=tmp_path / "c")
    assert _no_entries(tmp_path / "c")


def test_quantized_base_and_export_folder_are_refused(make_checkpoint, make_export, adapters, tmp_path):
    base = tmp_path / "gptq-base"
    shutil.copytree(make_checkpoint(), base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(UnsupportedModelError, match="gptq-quantized: LoRA cannot be fused"):
        AutoModelForCausalLM.from_pretrained(base, lora=adapters["a"], ov_cache_dir=tmp_path / "c")
    assert _no_entries(tmp_path / "c") or list_entries(tmp_path / "c") == []
    with pytest.raises(UnsupportedModelError, match="lora= needs the Hugging Face checkpoint"):
        AutoModelForCausalLM.from_pretrained(make_export(), lora=adapters["a"])
