"""Export once per checkpoint: every preset is derived from the cached fp32 export, not exported from torch again."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from ov_causal import DEMO_MODEL, AutoModelForCausalLM
from ov_causal.convert.cache_entries import list_entries
from ov_causal.convert.integrity import verify
from ov_causal.convert.loading import derives
from ov_causal.convert.sources import Source
from ov_causal.errors import ExportError

PROMPT = ["def parse(args):\n    return"]
CALIBRATION = str(DEMO_MODEL / "calibration.txt")


@pytest.fixture
def nncf_calls(monkeypatch):
    """The keywords of every nncf.compress_weights call during the test."""
    import nncf

    calls = []
    original = nncf.compress_weights

    def spying(model, **kwargs):
        calls.append(kwargs)
        return original(model, **kwargs)

    monkeypatch.setattr(nncf, "compress_weights", spying)
    return calls


def greedy(model, tokens: int = 12) -> list[int]:
    inputs = model.tokenizer(PROMPT, return_tensors="pt")
    return model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)[0].tolist()


def _presets(root: Path) -> dict[str, list[str]]:
    """{preset: [entry keys]} of the cache's entries, as their manifests name them."""
    found: dict[str, list[str]] = {}
    for entry in list_entries(root):
        found.setdefault(entry.preset, []).append(entry.key)
    return found


_GENERATED_NAME = re.compile(r'(name|names)="([A-Za-z0-9]+)_\d+(_compressed)?"')
_MODEL_NAME = re.compile(r'<net name="Model\d+"')
# fp16 only: saving an IR read back from disk marks the small constants compress_to_fp16 keeps in f32 (shape
# subgraphs) as such; the export's freshly traced model has the same constants, in f32, unmarked.
_F32_MARK = re.compile(r'\s*<rt_info>\s*<attribute name="DisablePrecisionConversion" version="0" value="dynamic:f16" />'
                       r'\s*</rt_info>')


def _ir_digest(folder: Path) -> tuple[str, str]:
    """sha256 of the weights file and of the XML with OpenVINO's generated names (``Constant_15468``, ``Model0``:
    process-wide counters, different in every process) blanked out."""
    weights = hashlib.sha256((folder / "openvino_model.bin").read_bytes()).hexdigest()
    xml = _GENERATED_NAME.sub(r'\1="\2_N\3"', (folder / "openvino_model.xml").read_text(encoding="utf-8"))
    xml = _F32_MARK.sub("", _MODEL_NAME.sub('<net name="Model"', xml))
    return weights, hashlib.sha256(xml.encode()).hexdigest()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("derive-cache")


def test_a_second_preset_makes_no_torch_export(make_checkpoint, shared_cache, count_exports):
    first = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=shared_cache,
                                                 compile=False)
    assert first.ov_cache_hit is False and len(count_exports) == 1
    assert sorted(_presets(shared_cache)) == ["fp32", "int8"]  # the fp32 export is kept for the next preset
    for preset in ("int4_sym_g64", "fp16"):
        model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=preset, ov_cache_dir=shared_cache,
                                                     compile=False)
        assert model.ov_cache_hit is False and model.ov_manifest.preset == preset
    assert len(count_exports) == 1, f"torch exported again: {count_exports}"
    fp32 = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp32", ov_cache_dir=shared_cache,
                                                compile=False)
    assert fp32.ov_cache_hit is True and len(count_exports) == 1
    assert sorted(_presets(shared_cache)) == ["fp16", "fp32", "int4_sym_g64", "int8"]
    assert all(entry.problem is None for entry in list_entries(shared_cache))


@pytest.mark.parametrize("preset", ["int8", "int4_sym_g64", "fp16"])
def test_derived_export_equals_the_torch_export(make_checkpoint, shared_cache, preset):
    """The derived entry holds the IR the direct path (torch export of this preset, cache=False) writes."""
    derived = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=preset, ov_cache_dir=shared_cache)
    direct = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset=preset, cache=False)
    assert derived.ov_cache_hit is not None and direct.ov_cache_hit is None
    assert _ir_digest(Path(derived.model_save_dir)) == _ir_digest(Path(direct.model_save_dir))
    assert greedy(derived) == greedy(direct)
    inputs = derived.tokenizer(PROMPT, return_tensors="pt")
    assert torch.equal(derived(**inputs).logits, direct(**inputs).logits)
    assert derived.ov_manifest.compression == direct.ov_manifest.compression
    for name in ("config.json", "tokenizer.json", "openvino_tokenizer.bin", "openvino_detokenizer.bin"):
        assert (Path(derived.model_save_dir) / name).read_bytes() == (Path(direct.model_save_dir) / name).read_bytes()


def test_data_aware_preset_calibrates_on_the_derived_path(make_checkpoint, shared_cache, count_exports, nncf_calls):
    AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp32", ov_cache_dir=shared_cache, compile=False)
    count_exports.clear()
    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int4_asym_g64_awq",
                                                 ov_cache_dir=shared_cache, calibration=CALIBRATION, compile=False)
    assert model.ov_cache_hit is False and count_exports == []
    (call,) = nncf_calls
    assert call["dataset"] is not None and call["awq"] is True and call["scale_estimation"] is True
    assert len(list(call["dataset"].get_data())) >= 4  # windows of the calibration text
    direct = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int4_asym_g64_awq", cache=False,
                                                  calibration=CALIBRATION, compile=False)
    assert _ir_digest(Path(model.model_save_dir)) == _ir_digest(Path(direct.model_save_dir))


def test_failed_compression_keeps_a_cached_base_and_writes_nothing(make_checkpoint, tmp_path, monkeypatch,
                                                                   count_exports):
    import nncf

    base = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="fp32", ov_cache_dir=tmp_path, compile=False)
    monkeypatch.setattr(nncf, "compress_weights", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(ExportError, match="NNCF could not compress.*boom"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path, compile=False)
    assert [e.preset for e in list_entries(tmp_path)] == ["fp32"] and verify(Path(base.model_save_dir)) is None
    assert not [p for p in (tmp_path / "entries").iterdir() if p.name.startswith(".")]
    assert len(count_exports) == 1


def test_failed_first_compression_leaves_no_entry(make_checkpoint, tmp_path, monkeypatch):
    """The fp32 export built for a preset that then fails is removed: the cache is as the load found it."""
    import nncf

    monkeypatch.setattr(nncf, "compress_weights", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(ExportError, match="boom"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path, compile=False)
    assert list((tmp_path / "entries").iterdir()) == []


@pytest.fixture(scope="module")
def adapter(make_checkpoint, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM as TorchModel

    torch.manual_seed(1)
    base = TorchModel.from_pretrained(make_checkpoint(), dtype="float32")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter") / "a"
    get_peft_model(base, config).save_pretrained(out)
    return out


def test_lora_presets_derive_from_the_fused_fp32_export(make_checkpoint, adapter, tmp_path, count_exports,
                                                         monkeypatch):
    import ov_causal.convert.loading as loading

    fused = []
    original = loading.fused_checkpoint

    def counting(*args, **kwargs):
        fused.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(loading, "fused_checkpoint", counting)
    int8 = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=adapter, preset="int8", ov_cache_dir=tmp_path)
    int4 = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=adapter, preset="int4_asym_g64",
                                                ov_cache_dir=tmp_path, compile=False)
    assert (len(count_exports), len(fused)) == (1, 1)  # one fusion, one torch export, for both presets
    manifests = {e.preset: json.loads((e.folder / "ov_causal.json").read_text()) for e in list_entries(tmp_path)}
    assert sorted(manifests) == ["fp32", "int4_asym_g64", "int8"]
    assert all(m["adapters"] == [{"path": str(adapter), "weight": 1.0}] for m in manifests.values())
    assert int4.ov_manifest.adapters == int8.ov_manifest.adapters
    plain = AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", ov_cache_dir=tmp_path)
    assert len(count_exports) == 2  # the checkpoint without the adapter has an fp32 export of its own
    assert greedy(plain) != greedy(int8)
    direct = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=adapter, preset="int8", cache=False)
    assert greedy(direct) == greedy(int8)


def test_which_presets_derive(tmp_path):
    def source(dtype):
        folder = tmp_path / str(dtype)
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps({} if dtype is None else {"dtype": dtype}))
        return Source("checkpoint", folder, folder.name)

    from ov_causal.config.presets import PRESETS

    fp16, int8, fp32 = (PRESETS[n].compression for n in ("fp16", "int8", "fp32"))
    assert derives(source("bfloat16"), int8) and not derives(source("bfloat16"), fp16)
    assert derives(source("float32"), fp16) and derives(source(None), fp16)
    assert not derives(source("float16"), fp16) and not derives(source("float32"), fp32)
