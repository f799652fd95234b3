"""Every bad input gets a clear error from our hierarchy, and leaves no partial folder behind."""

from __future__ import annotations

import json
import shutil

import pytest

import ov_causal
from ov_causal import (
    AutoModelForCausalLM,
    Compression,
    DeviceError,
    ExportError,
    ModelSourceError,
    OptionError,
    OVCausalError,
    PresetError,
    UnsupportedModelError,
)


def test_unknown_preset_lists_valid_names_and_suggests_closest(make_checkpoint):
    with pytest.raises(PresetError, match="Did you mean 'int4_asym_g64'") as info:
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int4_asmy_g64")
    assert "int8" in str(info.value) and "fp16" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, OVCausalError)
    with pytest.raises(PresetError, match="Did you mean 'latency'"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), runtime="latnecy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(preset="int4_asym_g64", group_size=100), "group_size=100 is not valid"),
        (dict(preset="int4_asym_g64", ratio=1.5), "ratio=1.5 is not valid"),
        (dict(preset="int4_asym_g64", ratio=0), "ratio=0 is not valid"),
        (dict(preset="int8", group_size=64), "apply to int4 presets"),
        (dict(group_size=64), "need an int4 preset"),
        (dict(dq_group_size=48), "group size 48 is not valid"),
        (dict(preset=42), "preset=42 is not valid"),
    ],
)
def test_bad_group_size_and_ratio(kwargs, message, make_checkpoint):
    with pytest.raises(PresetError, match=message):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), **kwargs)


def test_bad_compression_objects():
    with pytest.raises(PresetError, match="int4 only"):
        Compression("int8", group_size=64)
    with pytest.raises(PresetError, match="weights='int3'"):
        Compression("int3")  # type: ignore[arg-type]


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist") as info:
        AutoModelForCausalLM.from_pretrained(tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ModelSourceError, match="does not exist"):
        AutoModelForCausalLM.from_pretrained("./missing/model/folder")


def test_hub_id_unreachable_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="could not be fetched from the Hugging Face Hub"):
        AutoModelForCausalLM.from_pretrained("no-such-org/no-such-model-xyz")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelSourceError, match="neither an OpenVINO export .* nor a Hugging Face checkpoint"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_unsupported_architecture_names_it_and_the_supported_ones(make_checkpoint, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(make_checkpoint(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UnsupportedModelError, match="architecture 'bert' cannot be exported") as info:
        AutoModelForCausalLM.from_pretrained(folder)
    assert "llama" in str(info.value) and "qwen2" in str(info.value)


def test_stateful_request_on_stateless_export(make_export):
    with pytest.raises(UnsupportedModelError, match="exported stateless"):
        AutoModelForCausalLM.from_pretrained(make_export(stateful=False), stateful=True)
    with pytest.raises(UnsupportedModelError, match="exported stateful"):
        AutoModelForCausalLM.from_pretrained(make_export(), stateful=False)
    with pytest.raises(UnsupportedModelError, match="exported stateless"):
        AutoModelForCausalLM.from_pretrained(make_export(stateful=False), stateful=True, preset="int8")


def test_recompressing_a_compressed_export(make_export):
    with pytest.raises(UnsupportedModelError, match="already stores int8 weights"):
        AutoModelForCausalLM.from_pretrained(make_export(preset="int8"), preset="int4_asym_g64")


@pytest.mark.parametrize(
    ("ov_config", "message"),
    [
        ({"PERFORMANCE_HNT": "LATENCY"}, "Did you mean 'PERFORMANCE_HINT'"),
        ({"PERFORMANCE_HINT": "FAST"}, r"ov_config\['PERFORMANCE_HINT'\] = 'FAST' is not valid"),
        ({"KV_CACHE_PRECISION": "u3"}, "KV_CACHE_PRECISION"),
        ({"DYNAMIC_QUANTIZATION_GROUP_SIZE": -1}, "non-negative integer"),
        ({"NUM_STREAMS": 0}, "positive integer"),
        ("LATENCY", "must be a dict"),
    ],
)
def test_bad_ov_config(ov_config, message, make_export):
    with pytest.raises(OptionError, match=message):
        AutoModelForCausalLM.from_pretrained(make_export(), ov_config=ov_config)


def test_device_specific_keys_are_checked_against_the_device(make_export):
    model = AutoModelForCausalLM.from_pretrained(make_export(), ov_config={"ENABLE_TENSOR_PARALLEL": False})
    assert model.ov_config["ENABLE_TENSOR_PARALLEL"] == "NO"


def test_nonexistent_device_names_the_available_ones(make_export):
    with pytest.raises(DeviceError, match="'NPU' is not available on this machine. Available devices: CPU"):
        AutoModelForCausalLM.from_pretrained(make_export(), device="NPU")
    model = AutoModelForCausalLM.from_pretrained(make_export(), compile=False)
    with pytest.raises(DeviceError, match="Available devices: CPU"):
        model.to("GPU.3")


def test_unknown_keyword_is_an_error_not_dropped(make_export):
    with pytest.raises(OptionError, match="unknown keyword 'compresion_option'.*Did you mean 'compression_option'"):
        AutoModelForCausalLM.from_pretrained(make_export(), compresion_option="int8")
    with pytest.raises(OptionError, match="Did you mean 'revision'"):
        AutoModelForCausalLM.from_pretrained(make_export(), revison="main")


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.mark.parametrize("cache", [True, False])
def test_failed_export_leaves_nothing(cache, make_checkpoint, tmp_path, monkeypatch):
    import optimum.exporters.openvino as exporters

    def broken_export(model, output, **kwargs):
        (output / "openvino_model.xml").write_text("<half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporters, "main_export", broken_export)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(ExportError, match="disk full.*Nothing was written"):
        AutoModelForCausalLM.from_pretrained(make_checkpoint(), preset="int8", cache=cache, ov_cache_dir=tmp_path / "c")
    assert not [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]
    entries = tmp_path / "c" / "entries"
    assert not entries.exists() or not list(entries.iterdir())


def test_failed_save_leaves_nothing(make_export, tmp_path, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(make_export(), compile=False)

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(model.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="no space left"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(ExportError, match="it is a file"):
        (tmp_path / "file").write_text("x")
        model.save_pretrained(tmp_path / "file")


def test_errors_are_exported_from_the_package():
    for name in ("OVCausalError", "PresetError", "OptionError", "DeviceError", "ModelSourceError", "ExportError"):
        assert issubclass(getattr(ov_causal, name), ov_causal.OVCausalError)


def test_warnings_point_at_the_callers_line(make_export):
    """A warning names the user's file, called directly or through pipeline() (frames deeper in ov_causal)."""
    with pytest.warns(UserWarning, match="ignores low_cpu_mem_usage=") as direct:
        AutoModelForCausalLM.from_pretrained(make_export(), low_cpu_mem_usage=True, compile=False)
    with pytest.warns(UserWarning, match="ignores device_map=") as piped:
        ov_causal.pipeline("text-generation", str(make_export()), device_map="auto")
    for record in (direct, piped):
        ours = [w for w in record if "ov_causal ignores" in str(w.message)]
        assert ours and all(w.filename == __file__ for w in ours), [(w.filename, w.lineno) for w in ours]


def test_warn_skips_every_frame_of_the_package():
    from ov_causal.errors import warn

    with pytest.warns(UserWarning, match="from here") as record:
        warn("from here")
    assert record[0].filename == __file__
