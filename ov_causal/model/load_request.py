"""Stage 1 of ``from_pretrained``: the user's keywords (ours, optimum-intel's, transformers' habits) checked
and turned into one request: the source, the export request, the runtime and the device."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..config.hub import resolve_hf_kwargs
from ..config.optimum_keywords import merge_preset
from ..config.options import check_device, validate_ov_config
from ..config.presets import Compression, Preset, Runtime, resolve_compression, resolve_runtime
from ..convert.calibration import TextSource, load_texts
from ..convert.loading import ExportRequest
from ..convert.lora import LoraSpec, parse_adapters
from ..convert.sources import Source, resolve_source
from ..errors import PresetError, warn
from .backends import check_backend


def _auto(model_id: Any, hub: Any, ov_cache_dir: Any) -> tuple[str | None, str]:
    """``preset="auto"``: the tuned choice or the documented rule (see ``ov_causal.config.auto.auto_preset``)."""
    from ..config.auto import auto_preset, tuned_key
    from ..convert.cache import cache_root, folder_fingerprint
    from ..convert.sources import count_parameters
    from ..convert.speed_probe import int_speeds

    source = resolve_source(model_id, hub)
    if source.kind == "openvino":
        return None, "auto on an OpenVINO export: its weights are kept as they are"
    if source.kind == "gguf":
        return None, "auto on a GGUF file: its own quantization is kept (OpenVINO GenAI reads it)"
    key = tuned_key(os.fspath(model_id), folder_fingerprint)
    return auto_preset(key, count_parameters(source.path), cache_root(ov_cache_dir), int_speeds)


@dataclass(frozen=True)
class Resolved:
    """Stage 1 of loading: the user's keywords checked and turned into one request."""

    source: Source
    request: ExportRequest
    runtime: Runtime | None  # None: the default for the weights (``presets.default_runtime``)
    overrides: dict[str, str]
    device: str
    auto_reason: str | None
    optimum_kwargs: dict[str, Any]


@dataclass(frozen=True)
class LoadOptions:
    """``from_pretrained``'s own keywords (ours and optimum-intel's) with their defaults, checked once, without
    torch. ``load_model`` documents them; its signature repeats these defaults (kept equal by
    ``tests/test_plan.py``). ``device`` is upper-cased and ``ov_config`` normalised to strings when checked.
    """

    preset: str | Preset | Compression | None = None
    compression_option: str | None = None
    load_in_8bit: bool | None = None
    quantization_config: Any = None
    runtime: str | Runtime | None = None
    ov_config: Mapping[str, Any] | None = None
    group_size: int | None = None
    ratio: float | None = None
    dq_group_size: int | None = None
    stateful: bool | None = None
    device: str = "CPU"
    compile: bool = True
    export: bool | None = None
    load_tokenizer: bool = True
    lora: LoraSpec | None = None
    lora_allow_pickle: bool = False
    cache: bool = True
    ov_cache_dir: str | os.PathLike[str] | None = None
    calibration: TextSource | None = None
    awq: bool | None = None
    scale_estimation: bool | None = None
    gptq: bool | None = None
    sensitivity: str | None = None
    backend: str = "auto"
    config: Any = None
    generation_config: Any = None
    dynamic_shapes: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", check_device(self.device))
        check_backend(self.backend)
        if self.ov_config is not None:
            object.__setattr__(self, "ov_config", validate_ov_config(self.ov_config, self.device))

    @classmethod
    def split(cls, keywords: Mapping[str, Any]) -> tuple[LoadOptions, dict[str, Any]]:
        """Ours, checked, and the keywords left over: the transformers ones, or unknown ones that
        ``resolve_request`` refuses with a suggestion."""
        names = {f.name for f in fields(cls)}
        ours = {k: v for k, v in keywords.items() if k in names}
        return cls(**ours), {k: v for k, v in keywords.items() if k not in names}

    @property
    def overrides(self) -> dict[str, Any]:
        """The per-model overrides of a preset's compression settings."""
        return {k: getattr(self, k) for k in ("group_size", "ratio", "awq", "scale_estimation", "gptq", "sensitivity")}

    @property
    def optimum_kwargs(self) -> dict[str, Any]:
        """optimum-intel's own keywords that were given, passed on to its ``from_pretrained``."""
        given = {"config": self.config, "generation_config": self.generation_config,
                 "dynamic_shapes": self.dynamic_shapes}
        return {k: v for k, v in given.items() if v is not None}


def resolve_request(model_id: Any, options: LoadOptions, kwargs: dict[str, Any]) -> Resolved:
    """Turn the keywords of ``from_pretrained`` (``options``: ours and optimum's; ``kwargs``: the transformers
    habits, checked here) into one ``Resolved`` request."""
    hub = resolve_hf_kwargs(kwargs)
    preset, calibration = merge_preset(
        options.preset, options.compression_option, options.load_in_8bit, options.quantization_config
    )
    if options.calibration is not None:
        calibration = tuple(load_texts(options.calibration, "calibration"))
    auto_reason = None
    if preset == "auto":
        preset, auto_reason = _auto(model_id, hub, options.ov_cache_dir)
    name, compression = resolve_compression(preset, **options.overrides)
    if hub.dtype_preset is not None:
        if compression is None:
            name, compression = resolve_compression(hub.dtype_preset)
        else:
            warn(f"torch_dtype/dtype is ignored: preset={name!r} sets the weights.")
    runtime = resolve_runtime(options.runtime, preset, options.dq_group_size)
    ov_cache_dir = options.ov_cache_dir
    request = ExportRequest(
        name, compression, options.stateful, hub, tuple(parse_adapters(options.lora)), options.lora_allow_pickle,
        options.cache, None if ov_cache_dir is None else os.fspath(ov_cache_dir), calibration,
    )
    if compression is not None and compression.data_aware and not request.calibration:
        raise PresetError(
            f"preset {name!r} ({compression.describe()}) is data-aware: pass calibration= (a file, a string or "
            "a list of strings of the text the model will see)."
        )
    return Resolved(
        resolve_source(model_id, hub), request, runtime, dict(options.ov_config or {}), options.device, auto_reason,
        options.optimum_kwargs,
    )
