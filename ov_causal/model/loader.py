"""What ``modeling.load_model`` reads the IR and attaches with: optimum-intel's model for a folder, our class for
optimum's, the IR's fingerprint, pipeline registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimum.intel import OVModelForCausalLM as OptimumCausalLM

from ..config.hub import quiet_offline_folder_check
from ..convert.loading import damaged_ir
from ..errors import UnsupportedModelError
from .load_request import Resolved


def fingerprint(model: Any) -> tuple[int, int]:
    """Identity and op count: tells whether ``model.model`` was replaced or rewritten (e.g. by NNCF) since loading."""
    return id(model), len(model.get_ops())


def register_for_pipelines(model: Any) -> None:
    """Name our class in transformers' causal-LM mapping, as optimum does for its own at construction, so that
    ``transformers.pipeline`` accepts the model without logging "not supported for text-generation"."""
    from transformers import AutoConfig

    model.auto_model_class.register(AutoConfig, type(model), exist_ok=True)


def load_optimum(folder: Path, full_config: dict[str, str], resolved: Resolved) -> Any:
    """Stage 3: optimum-intel reads the IR (not compiled yet)."""
    try:
        with quiet_offline_folder_check():
            return OptimumCausalLM.from_pretrained(
                str(folder), export=False, ov_config=full_config, device=resolved.device, compile=False,
                use_cache=resolved.request.hub.use_cache, **resolved.optimum_kwargs,
            )
    except ValueError as exc:
        raise UnsupportedModelError(f"OpenVINO could not load {str(folder)!r}: {exc}") from exc
    except RuntimeError as exc:  # OpenVINO's "Unable to read the model", "Incorrect weights in bin file"
        raise damaged_ir(folder, exc) from exc


_CLASSES: dict[type, type] = {}  # optimum's class -> ours


def ov_class(optimum_class: type, ours: type) -> type:
    """``ours`` (OVModelForCausalLM), or our class for whichever other class optimum-intel chose (phi3, bloom...).

    For those, a subclass of both: the optimum class comes first among the bases (CPython only allows
    re-classing an instance to a class whose first base has its layout), so our methods are copied in
    to take precedence over its overrides; ``_ov_base`` names it for the calls that go to optimum.
    """
    if optimum_class is OptimumCausalLM:
        return ours
    if optimum_class not in _CLASSES:
        suffix = optimum_class.__name__.removeprefix("OV").removeprefix("ModelFor")
        name = f"OVCausal{suffix}"
        namespace = {k: v for k, v in vars(ours).items() if k not in ("__dict__", "__weakref__")}
        namespace.update(__module__=ours.__module__, __qualname__=name, _ov_base=optimum_class)
        _CLASSES[optimum_class] = type(name, (optimum_class, ours), namespace)
    return _CLASSES[optimum_class]
