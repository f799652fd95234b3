"""optimum-intel's ``from_pretrained`` keywords, mapped onto ours with optimum's meaning.

``load_in_8bit``, ``quantization_config`` (an ``OVWeightQuantizationConfig`` or its dict) and the white
paper's ``compression_option`` all become a compression preset; what ov_causal cannot honour exactly is
refused with the reason, never dropped.
"""

from __future__ import annotations

from typing import Any

from ..errors import OptionError, PresetError
from .presets import PRESETS, Compression, Preset

# Defaults of OVWeightQuantizationConfig fields we cannot represent: any other value is refused.
_UNSUPPORTED_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "all_layers": (None, False),
    "ignored_scope": (None,),
    "num_samples": (None,),
    "lora_correction": (None, False),
    "statistics_path": (None,),
    "processor": (None,),
    "tokenizer": (None,),
    "dq_group_size": (None,),
}
_BACKUP_PRECISIONS = (None, "int8_asym")
_METHODS = ("default", "awq")


def _config_dict(quantization_config: Any) -> dict[str, Any]:
    """The fields of an ``OVWeightQuantizationConfig`` (or of the dict a user passes instead)."""
    if isinstance(quantization_config, dict):
        return dict(quantization_config)
    kind = type(quantization_config).__name__
    if kind != "OVWeightQuantizationConfig":
        raise PresetError(
            f"quantization_config={kind}(...) is not supported: ov_causal compresses weights only. Pass an "
            "OVWeightQuantizationConfig (bits=8 or bits=4), or a preset name such as preset='int8'."
        )
    return {k: v for k, v in vars(quantization_config).items() if not k.startswith("_")}


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _check_representable(fields: dict[str, Any]) -> None:
    for key, allowed in _UNSUPPORTED_DEFAULTS.items():
        if fields.get(key) not in allowed:
            raise PresetError(
                f"quantization_config {key}={fields[key]!r} is not supported by ov_causal (it would be ignored). "
                f"Leave {key} unset, or use optimum.intel.OVModelForCausalLM directly for it."
            )
    if fields.get("backup_precision") not in _BACKUP_PRECISIONS:
        raise PresetError(
            f"quantization_config backup_precision={fields['backup_precision']!r} is not supported: ov_causal keeps "
            "the layers that ratio= leaves out of int4 in int8 asymmetric ('int8_asym', the default)."
        )
    method = str(_enum_value(fields.get("quant_method", "default")) or "default").lower()
    if method not in _METHODS:
        raise PresetError(f"quantization_config quant_method={method!r} is not supported: use 'default' or 'awq'.")
    fallback = _enum_value(fields.get("group_size_fallback"))
    if fallback not in (None, "adjust"):
        raise PresetError(
            f"quantization_config group_size_fallback={fallback!r} is not supported: ov_causal always adjusts (a "
            "smaller group, else int8 for that layer) and records which layers fell back in the manifest. Leave it "
            "unset or pass 'adjust'."
        )


def _calibration(fields: dict[str, Any]) -> tuple[str, ...]:
    dataset = fields.get("dataset")
    if dataset is None:
        return ()
    if isinstance(dataset, str):
        raise PresetError(
            f"quantization_config dataset={dataset!r} names a Hub dataset; ov_causal calibrates on your own text: "
            "pass dataset=[...] as a list of strings, or calibration='file.txt'."
        )
    return tuple(str(text) for text in dataset)


def from_quantization_config(quantization_config: Any) -> tuple[str, Compression, tuple[str, ...]]:
    """(preset name, Compression, calibration texts) for optimum's ``quantization_config``.

    Example:
        >>> from_quantization_config({"bits": 4, "sym": True, "group_size": 64})[0]
        'int4_sym_g64'
    """
    fields = _config_dict(quantization_config)
    _check_representable(fields)
    dtype = fields.get("dtype") or fields.get("weight_format")
    bits = fields.get("bits", 8)
    if dtype not in (None, "int4", "int8"):
        raise PresetError(f"quantization_config dtype={dtype!r} is not supported: use bits=8 or bits=4 (int8/int4).")
    bits = {"int4": 4, "int8": 8}.get(dtype, bits)
    if bits == 8:
        if fields.get("sym"):
            raise PresetError(
                "quantization_config bits=8, sym=True is not supported: ov_causal's int8 is asymmetric per channel "
                "(optimum's default). Drop sym=True."
            )
        if fields.get("group_size") not in (None, -1) or fields.get("ratio", 1.0) != 1.0:
            raise PresetError("quantization_config bits=8 takes no group_size or ratio (int8 is per channel).")
        return "int8", PRESETS["int8"].compression, ()
    if bits != 4:
        raise PresetError(f"quantization_config bits={bits!r} is not supported: use 8 or 4.")
    metric = _enum_value(fields.get("sensitivity_metric"))
    compression = Compression(
        "int4",
        sym=bool(fields.get("sym", False)),
        group_size=128 if fields.get("group_size") is None else int(fields["group_size"]),
        ratio=float(fields.get("ratio", 1.0)),
        awq=str(_enum_value(fields.get("quant_method", "default"))).lower() == "awq",
        scale_estimation=bool(fields.get("scale_estimation")),
        gptq=bool(fields.get("gptq")),
        sensitivity=str(metric).lower() if metric is not None else None,
    )
    return _preset_name(compression), compression, _calibration(fields)


def _preset_name(compression: Compression) -> str:
    for name, preset in PRESETS.items():
        if preset.compression == compression:
            return name
    return "custom"


def load_in_8bit_preset(load_in_8bit: bool | None) -> str | None:
    """optimum's ``load_in_8bit``: True is int8 weights, False no compression (even above 1B), None the default."""
    if load_in_8bit is None:
        return None
    if not isinstance(load_in_8bit, bool):
        raise OptionError(f"load_in_8bit={load_in_8bit!r} is not valid: use True or False.")
    return "int8" if load_in_8bit else "fp32"


PresetArg = str | Preset | Compression | None


def merge_preset(
    preset: PresetArg,
    compression_option: str | None,
    load_in_8bit: bool | None,
    quantization_config: Any,
) -> tuple[PresetArg, tuple[str, ...]]:
    """One compression request out of the four ways to ask for it; two that disagree are an error.

    Returns the preset to resolve and calibration texts that came with ``quantization_config``.
    """
    asked: dict[str, PresetArg] = {}  # keyword -> the compression it asks for
    typed: dict[str, Any] = {}  # keyword -> what the user passed, for the message
    calibration: tuple[str, ...] = ()
    if preset is not None:
        asked["preset"] = typed["preset"] = preset
    if compression_option is not None:
        asked["compression_option"] = typed["compression_option"] = compression_option
    if quantization_config is not None:  # optimum: quantization_config wins over load_in_8bit
        name, compression, calibration = from_quantization_config(quantization_config)
        asked["quantization_config"] = compression if name == "custom" else name
        typed["quantization_config"] = quantization_config
    elif load_in_8bit is not None:
        asked["load_in_8bit"] = load_in_8bit_preset(load_in_8bit)
        typed["load_in_8bit"] = load_in_8bit
    distinct = {_identity(v) for v in asked.values()}
    if len(distinct) > 1:
        given = ", ".join(_in_own_words(k, typed[k], asked[k]) for k in asked)
        raise PresetError(f"{given} ask for different compressions: pass only one of them.")
    return (next(iter(asked.values())) if asked else None), calibration


def _in_own_words(keyword: str, typed: Any, meaning: PresetArg) -> str:
    """``load_in_8bit=True (int8)``: the keyword as the user passed it, then what it means when that differs."""
    if isinstance(typed, (str, Preset, Compression)):
        return f"{keyword}={_shown(typed)}"
    shown = _config_repr(typed) if keyword == "quantization_config" else repr(typed)
    return f"{keyword}={shown} ({meaning.describe() if isinstance(meaning, Compression) else meaning})"


def _config_repr(config: Any) -> str:
    """A dict as given; an ``OVWeightQuantizationConfig`` by its fields that differ from None."""
    if isinstance(config, dict):
        return repr(config)
    fields = {k: v for k, v in _config_dict(config).items() if v is not None}
    shown = ", ".join(f"{k}={_enum_value(v)!r}" for k, v in fields.items() if k in _SHOWN_FIELDS)
    return f"{type(config).__name__}({shown})"


_SHOWN_FIELDS = ("bits", "dtype", "sym", "group_size", "ratio", "quant_method", "gptq", "scale_estimation")


def _identity(value: PresetArg) -> Any:
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value].compression
    if isinstance(value, Preset):
        return value.compression
    return value


def _shown(value: PresetArg) -> str:
    return value.describe() if isinstance(value, Compression) else repr(value)
