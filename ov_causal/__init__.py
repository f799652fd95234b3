"""ov_causal: Hugging Face causal language models on OpenVINO, behind the ``transformers`` API.

``from ov_causal import AutoModelForCausalLM`` is the one-line switch. Heavy libraries (openvino,
torch, optimum) load on first use, not on import.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    DeviceError,
    ExportError,
    MissingExtraError,
    ModelSourceError,
    OptionError,
    OVCausalError,
    PresetError,
    StructuredOutputError,
    UnsupportedModelError,
)
from .presets import (
    PRESETS,
    RUNTIMES,
    Compression,
    Preset,
    Runtime,
    get_preset,
    get_runtime,
    presets_table,
    runtimes_table,
)

__version__ = "0.1.0"

_LAZY = {
    "AutoModelForCausalLM": "ov_causal.modeling",
    "OVCausalLM": "ov_causal.modeling",
    "OVModelForCausalLM": "ov_causal.modeling",
    "pipeline": "ov_causal.pipelines",
    "fuse_lora": "ov_causal.lora",
    "generate": "ov_causal.generation",
    "stream": "ov_causal.generation",
    "structured_output_config": "ov_causal.structured",
    "set_progress": "ov_causal.progress",
    "cache_table": "ov_causal.cache",
}

__all__ = [
    "AutoModelForCausalLM",
    "Compression",
    "DeviceError",
    "ExportError",
    "MissingExtraError",
    "ModelSourceError",
    "OVCausalError",
    "OVCausalLM",
    "OVModelForCausalLM",
    "OptionError",
    "PRESETS",
    "Preset",
    "PresetError",
    "RUNTIMES",
    "Runtime",
    "StructuredOutputError",
    "UnsupportedModelError",
    "cache_table",
    "fuse_lora",
    "generate",
    "get_preset",
    "get_runtime",
    "pipeline",
    "presets_table",
    "runtimes_table",
    "set_progress",
    "stream",
    "structured_output_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ov_causal' has no attribute {name!r}")
