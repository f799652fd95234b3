"""ov_causal: Hugging Face causal language models on OpenVINO, behind the ``transformers`` API.

``from ov_causal import AutoModelForCausalLM`` is the one-line switch. Heavy libraries (openvino,
torch, optimum) load on first use, not on import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .config.presets import (
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
from .errors import (
    CacheError,
    DamagedModelError,
    DeviceError,
    ExportError,
    LoraError,
    ManifestError,
    MissingExtraError,
    ModelSourceError,
    OptionError,
    OVCausalError,
    PresetError,
    ServerError,
    StructuredOutputError,
    UnsupportedModelError,
)

if TYPE_CHECKING:  # what IDEs, type checkers and the docs see; at run time __getattr__ imports on first use
    from .convert.cache_entries import cache_table, prune_cache, verify_cache
    from .convert.lora import fuse_lora
    from .convert.sources import DEMO_MODEL
    from .model.modeling import AutoModelForCausalLM, OVModelForCausalLM
    from .model.modeling import OVCausalLM as OVCausalLM  # the class's earlier name, kept out of __all__ and dir()
    from .model.pipelines import pipeline
    from .model.run import generate, stream
    from .model.structured import structured_output_config
    from .model.tool_calls import parse_tool_calls
    from .ui.progress import set_progress

__version__ = "0.1.0"

_LAZY = {
    "AutoModelForCausalLM": "ov_causal.model.modeling",
    "OVCausalLM": "ov_causal.model.modeling",  # the class's name in earlier releases (not in __all__)
    "OVModelForCausalLM": "ov_causal.model.modeling",
    "pipeline": "ov_causal.model.pipelines",
    "fuse_lora": "ov_causal.convert.lora",
    "generate": "ov_causal.model.run",
    "stream": "ov_causal.model.run",
    "structured_output_config": "ov_causal.model.structured",
    "parse_tool_calls": "ov_causal.model.tool_calls",
    "set_progress": "ov_causal.ui.progress",
    "cache_table": "ov_causal.convert.cache_entries",
    "prune_cache": "ov_causal.convert.cache_entries",
    "DEMO_MODEL": "ov_causal.convert.sources",
    "verify_cache": "ov_causal.convert.cache_entries",
}

__all__ = [
    "AutoModelForCausalLM",
    "DEMO_MODEL",
    "CacheError",
    "Compression",
    "DamagedModelError",
    "DeviceError",
    "ExportError",
    "LoraError",
    "ManifestError",
    "MissingExtraError",
    "ModelSourceError",
    "OVCausalError",
    "OVModelForCausalLM",
    "OptionError",
    "PRESETS",
    "Preset",
    "PresetError",
    "RUNTIMES",
    "Runtime",
    "ServerError",
    "StructuredOutputError",
    "UnsupportedModelError",
    "cache_table",
    "fuse_lora",
    "generate",
    "get_preset",
    "get_runtime",
    "parse_tool_calls",
    "pipeline",
    "presets_table",
    "prune_cache",
    "runtimes_table",
    "set_progress",
    "stream",
    "structured_output_config",
    "verify_cache",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ov_causal' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, lazy ones included, for ``dir()`` and tab completion (not the submodules)."""
    return sorted({*__all__, "__version__"})
