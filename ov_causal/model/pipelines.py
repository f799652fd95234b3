"""``ov_causal.pipeline``: ``transformers.pipeline`` with text generation served by OpenVINO."""

from __future__ import annotations

import os
from typing import Any

from ..config.hub import APPLIED, OV_KEYWORDS
from ..errors import OptionError

# Keywords of ours that pipeline() forwards to from_pretrained.
# device is mapped below; config and generation_config are transformers.pipeline keywords of its own.
_MODEL_KEYWORDS = tuple(k for k in OV_KEYWORDS if k not in ("device", "load_tokenizer", "config", "generation_config"))
# transformers.pipeline keywords that it would otherwise forward to model loading.
_LOADING_KEYWORDS = (*APPLIED, "torch_dtype", "dtype", "device_map")


def _ov_device(device: Any) -> str:
    """Map transformers' ``device=`` (None, -1, 'cpu', 'GPU', ...) to an OpenVINO device name."""
    if device is None or device == -1 or (isinstance(device, str) and device.lower() == "cpu"):
        return "CPU"
    if isinstance(device, str) and not device.lower().startswith(("cuda", "mps", "xpu")):
        return device
    raise OptionError(
        f"device={device!r} is a torch device; OpenVINO models take an OpenVINO device name: "
        "device='CPU' or device='GPU'."
    )


def pipeline(task: str | None = None, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> Any:
    """Drop-in for ``transformers.pipeline``.

    For ``"text-generation"`` with a model id or path, the model is loaded through
    ``ov_causal.AutoModelForCausalLM`` (``preset=``, ``runtime=``, ``ov_config=`` ... accepted) and its
    tokenizer is used unless one is given. Every other task goes to transformers unchanged.

    Example:
        >>> pipe = pipeline("text-generation", "org/model", preset="int8")
        >>> pipe("Hello", max_new_tokens=20)
    """
    import transformers

    ours = {k: kwargs.pop(k) for k in _MODEL_KEYWORDS if k in kwargs}
    if task != "text-generation":
        if ours:
            raise OptionError(
                f"{', '.join(ours)}= only apply to task='text-generation' with a model id or path; "
                f"task={task!r} is passed to transformers unchanged."
            )
        return transformers.pipeline(task, model=model, tokenizer=tokenizer, **kwargs)
    if isinstance(model, (str, os.PathLike)):
        from .modeling import AutoModelForCausalLM

        loading = {k: kwargs.pop(k) for k in _LOADING_KEYWORDS if k in kwargs}
        loading.update(kwargs.pop("model_kwargs", None) or {})
        model = AutoModelForCausalLM.from_pretrained(
            model, device=_ov_device(kwargs.pop("device", None)), **ours, **loading
        )
    elif ours:
        raise OptionError(
            f"{', '.join(ours)}= apply when pipeline() loads the model from an id or path; "
            "pass them to AutoModelForCausalLM.from_pretrained for a model object."
        )
    elif "device" in kwargs and getattr(model, "ov_manifest", None) is not None:
        model.to(_ov_device(kwargs.pop("device")))
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    return transformers.pipeline("text-generation", model=model, tokenizer=tokenizer, **kwargs)
