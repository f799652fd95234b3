"""Keywords users pass to transformers `from_pretrained` out of habit: applied, ignored with a warning, or refused."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError, suggest, warn

logger = logging.getLogger(__name__)

# Passed on to the Hub download / export unchanged.
APPLIED = ("revision", "token", "trust_remote_code", "cache_dir", "subfolder", "local_files_only", "force_download",
           "gguf_file")

# Meaningless on OpenVINO: accepted so existing code runs, with a warning that names them.
IGNORED = {
    "device_map": "OpenVINO places the model itself; use device='CPU' or device='GPU'",
    "low_cpu_mem_usage": "the export already streams weights",
    "attn_implementation": "OpenVINO picks its own attention kernels",
    "output_attentions": "not available from the OpenVINO model",
    "output_hidden_states": "not available from the OpenVINO model",
    "offload_folder": "OpenVINO does not offload weights",
    "offload_state_dict": "OpenVINO does not offload weights",
    "max_memory": "OpenVINO manages device memory itself",
    "use_safetensors": "the checkpoint's own format is used",
    "use_auth_token": "use token= instead",
}

# optimum-intel keywords whose meaning ov_causal cannot give: refused with what to do instead.
REFUSED = {
    "from_onnx": "ov_causal loads OpenVINO IR and Hugging Face checkpoints, not ONNX files",
    "compile_only": "use compile=True (the default); ov_causal keeps model.model for save_pretrained",
    "file_name": "ov_causal loads openvino_model.xml; rename the IR, or load it with optimum.intel directly",
    "model_save_dir": "ov_causal places exports in its cache; use save_pretrained(folder) to write one",
}

# Other libraries' words for a keyword of ours: what an unknown keyword's did-you-mean offers first.
KEYWORD_ALIASES = {
    "quantize": ("preset", "quantization_config"),
    "quantization": ("preset", "quantization_config"),
    "quantization_method": ("preset", "quantization_config"),
    "weight_format": ("preset", "quantization_config"),  # optimum-cli export openvino --weight-format
    "bits": ("preset", "quantization_config"),
    "load_in_4bit": ("preset", "quantization_config"),
    "compress": ("preset", "compression_option"),
    "compression": ("preset", "compression_option"),
    "precision": ("preset", "dtype"),
    "adapter": ("lora",),
    "adapters": ("lora",),
    "adapter_name": ("lora",),
    "peft_model": ("lora",),
}

_DTYPE_PRESETS = {"float32": "fp32", "float16": "fp16", "bfloat16": "fp16"}


@dataclass(frozen=True)
class HubOptions:
    """Keywords forwarded to the Hub download and to the exporter."""

    revision: str | None = None
    token: str | bool | None = None
    trust_remote_code: bool = False
    cache_dir: str | None = None
    subfolder: str = ""
    local_files_only: bool = False
    force_download: bool = False
    gguf_file: str | None = None  # a llama.cpp GGUF file in the folder (or Hub repo) named by the model id
    use_cache: bool = True
    dtype_preset: str | None = None
    ignored: tuple[str, ...] = field(default_factory=tuple)


def _dtype_name(dtype: Any) -> str | None:
    if dtype is None or dtype == "auto":
        return None
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPE_PRESETS:
        raise OptionError(f"dtype={dtype!r} is not supported: use float32, float16, bfloat16 or 'auto'.")
    return name


def resolve_hf_kwargs(kwargs: dict[str, Any]) -> HubOptions:
    """Sort the leftover keywords of ``from_pretrained``; unknown ones raise OptionError."""
    kwargs = dict(kwargs)
    applied = {k: kwargs.pop(k) for k in APPLIED if k in kwargs}
    dtypes = [kwargs.pop(k) for k in ("torch_dtype", "dtype") if k in kwargs]
    use_cache = kwargs.pop("use_cache", True)
    refused = [k for k in kwargs if k in REFUSED and kwargs[k] not in (None, False)]
    if refused:
        raise OptionError(f"from_pretrained({refused[0]}={kwargs[refused[0]]!r}) is not supported: "
                          f"{REFUSED[refused[0]]}.")
    for key in [k for k in kwargs if k in REFUSED]:
        kwargs.pop(key)
    ignored = tuple(k for k in list(kwargs) if k in IGNORED)
    for key in ignored:
        kwargs.pop(key)
        warn(f"ov_causal ignores {key}=: {IGNORED[key]}.")
    if kwargs:
        key = next(iter(kwargs))
        valid = sorted((*APPLIED, "torch_dtype", "dtype", "use_cache", *IGNORED, *OV_KEYWORDS))
        raise OptionError(
            f"from_pretrained() got an unknown keyword {key!r}.{suggest(key, valid, KEYWORD_ALIASES)} "
            f"ov_causal keywords: {', '.join(OV_KEYWORDS)}; transformers keywords accepted: "
            f"{', '.join(sorted((*APPLIED, 'torch_dtype', 'dtype', 'use_cache')))}."
        )
    names = {_dtype_name(d) for d in dtypes} - {None}
    if len(names) > 1:
        raise OptionError(f"torch_dtype and dtype disagree ({sorted(names)}): pass only one of them.")
    dtype_preset = _DTYPE_PRESETS[names.pop()] if names else None
    return HubOptions(**applied, use_cache=bool(use_cache), dtype_preset=dtype_preset, ignored=ignored)


OV_KEYWORDS = (
    "preset",
    "compression_option",
    "load_in_8bit",
    "quantization_config",
    "export",
    "config",
    "generation_config",
    "dynamic_shapes",
    "runtime",
    "ov_config",
    "group_size",
    "ratio",
    "dq_group_size",
    "stateful",
    "device",
    "compile",
    "load_tokenizer",
    "lora",
    "lora_allow_pickle",
    "cache",
    "ov_cache_dir",
    "calibration",
    "awq",
    "scale_estimation",
    "gptq",
    "sensitivity",
    "backend",
)


class _Drop(logging.Filter):
    """Drops the log records whose message contains every one of ``fragments``."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not all(fragment in message for fragment in self.fragments)


@contextmanager
def quiet_offline_folder_check() -> Iterator[None]:
    """While we load a local folder with ``export=False``: drop optimum-intel's "Could not infer whether the model
    was already converted" (in offline mode it looks the folder up as a Hub id; the answer is not used)."""
    optimum_logger = logging.getLogger("optimum.intel.openvino.modeling_base")
    drop = _Drop("Could not infer whether the model was already converted")
    optimum_logger.addFilter(drop)
    try:
        yield
    finally:
        optimum_logger.removeFilter(drop)
