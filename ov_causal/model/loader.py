"""``from_pretrained``'s keywords and stages: the request resolved, the folder prepared, the IR read by optimum-intel;
then the helpers ``load_model`` attaches with (our class for optimum's, the IR's fingerprint, pipeline registration)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimum.intel import OVModelForCausalLM as OptimumCausalLM

from ..build.calibration import TextSource
from ..build.loading import Prepared, damaged_ir, find_tokenizer, prepare_folder, runtime_config, stateful_error
from ..build.lora import LoraSpec
from ..config.hub import quiet_offline_folder_check
from ..config.presets import Compression, Preset, Runtime
from ..errors import UnsupportedModelError
from .engines import check_backend
from .load_request import Resolved, resolve_request


@dataclass(frozen=True)
class Loaded:
    """What ``load_ir`` hands to ``load_model``: optimum-intel's model (IR read) and how it came to be."""

    model: Any
    resolved: Resolved
    prepared: Prepared
    runtime: Runtime
    full_config: dict[str, str]
    tokenizer: Any
    backend: str
    compile: bool


def load_ir(
    pretrained_model_name_or_path: str | os.PathLike[str],
    *,
    preset: str | Preset | Compression | None = None,
    compression_option: str | None = None,
    load_in_8bit: bool | None = None,
    quantization_config: Any = None,
    runtime: str | Runtime | None = None,
    ov_config: Mapping[str, Any] | None = None,
    group_size: int | None = None,
    ratio: float | None = None,
    dq_group_size: int | None = None,
    stateful: bool | None = None,
    device: str = "CPU",
    compile: bool = True,
    export: bool | None = None,
    load_tokenizer: bool = True,
    lora: LoraSpec | None = None,
    lora_allow_pickle: bool = False,
    cache: bool = True,
    ov_cache_dir: str | os.PathLike[str] | None = None,
    calibration: TextSource | None = None,
    awq: bool | None = None,
    scale_estimation: bool | None = None,
    gptq: bool | None = None,
    sensitivity: str | None = None,
    backend: str = "auto",
    config: Any = None,
    generation_config: Any = None,
    dynamic_shapes: bool | None = None,
    **kwargs: Any,
) -> Loaded:
    """``from_pretrained``'s keywords, and its stages up to the IR read by optimum-intel (not compiled yet).

    Stage 1 resolves the request (``load_request``), stage 2 finds or builds the folder (export cache,
    export, LoRA fusion), stage 3 chooses the runtime and reads the IR. ``load_model`` then attaches
    what ov_causal knows to the model and compiles it.

    Args:
        pretrained_model_name_or_path: Hub id, checkpoint folder, or OpenVINO export folder.
        preset: weight compression: a name (``int8``, ``int4_asym_g64``, ``fp16``, ...), a
            ``Preset`` or a ``Compression``. Default: int8 above 1B parameters, none below.
            ``"auto"``: the choice ``ov-causal tune`` made for this model, else a rule by size and CPU.
        compression_option: the OpenVINO white paper's name for ``preset`` (``"int8"``, ``"int4_sym_g128"``, ...).
        load_in_8bit: optimum-intel's switch: True is ``preset="int8"``, False keeps the weights uncompressed
            (even above 1B parameters).
        quantization_config: optimum-intel's ``OVWeightQuantizationConfig`` (or its dict), honoured exactly:
            bits, sym, group_size, ratio, sensitivity_metric, quant_method="awq", scale_estimation, gptq and a
            dataset given as a list of strings; settings ov_causal cannot apply are refused.
        runtime: ``latency``, ``throughput``, ``accuracy``, ``memory`` or a ``Runtime``. Default:
            ``latency`` for int8/int4 weights, ``accuracy`` for fp32/fp16 weights or when ``ov_config`` sets
            ``INFERENCE_PRECISION_HINT="f32"``; an export folder restores the runtime it was saved with.
        ov_config: raw OpenVINO properties; each key overrides the runtime preset's.
        group_size: int4 override of the preset's group size.
        ratio: int4 override: share of layers in int4, the rest in int8.
        dq_group_size: dynamic quantization group size (32, 64, 128; 0 turns it off).
        stateful: KV cache inside the model (default True for exports; an export folder keeps its form).
        device: OpenVINO device, e.g. ``CPU`` or ``GPU``.
        compile: False defers compilation (use ``model.model`` for native access).
        export: optimum-intel's flag; accepted for compatibility (checkpoints are exported, export folders loaded).
        load_tokenizer: load the Hugging Face tokenizer found with the model as ``model.tokenizer``.
        lora: PEFT LoRA adapter folder(s) fused into the base before export: a path,
            ``{path: weight}`` or a list of (path, weight) pairs.
        lora_allow_pickle: accept pickle adapters (``adapter_model.bin``); unpickling runs code.
        cache: reuse (and publish) exports in the persistent cache; False exports to a temporary folder.
        ov_cache_dir: cache location (default ``$OV_CAUSAL_CACHE_DIR`` or ``~/.cache/ov_causal``).
        calibration: text for data-aware int4 (a file, a string or a list of strings; no Hub dataset).
        awq: int4 override: NNCF's AWQ (data-aware, needs ``calibration``).
        scale_estimation: int4 override: NNCF's scale estimation (data-aware).
        gptq: int4 override: NNCF's GPTQ (data-aware).
        sensitivity: int4 override: the metric that ranks layers for ``ratio`` < 1 (see
            ``SENSITIVITY_METRICS``).
        backend: generation engine: ``auto`` (OpenVINO GenAI when the call maps to it, else the
            transformers loop), ``genai`` or ``optimum``.
        config: a ``PretrainedConfig`` to use instead of the folder's ``config.json`` (as in optimum).
        generation_config: a ``GenerationConfig`` to use instead of the folder's (as in optimum).
        dynamic_shapes: optimum-intel's flag (it keeps causal LMs dynamic whatever the value).
        **kwargs: transformers keywords (``revision``, ``token``, ``trust_remote_code``,
            ``torch_dtype``, ``device_map``, ...): applied, or ignored with a warning.

    Example:
        >>> model = OVModelForCausalLM.from_pretrained("org/model", preset="int4_asym_g64")  # calls load_ir
    """
    options = dict(locals())
    options.pop("kwargs")
    resolved = resolve_request(pretrained_model_name_or_path, options, kwargs)
    prepared = prepare_folder(resolved.source, resolved.request)
    runtime_preset, full_config = runtime_config(
        resolved.runtime, resolved.overrides, prepared, resolved.source.kind, resolved.device, ov_config is not None
    )
    model = load_optimum(prepared.folder, full_config, resolved)
    if stateful is not None and stateful != model.stateful:
        raise stateful_error(prepared.folder, stateful)
    tokenizer = find_tokenizer(prepared.folder, resolved.request.hub) if load_tokenizer else None
    return Loaded(model, resolved, prepared, runtime_preset, full_config, tokenizer, check_backend(backend), compile)


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
