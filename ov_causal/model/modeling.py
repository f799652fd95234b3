"""``OVModelForCausalLM``: optimum-intel's class with ov_causal's presets, export cache and GenAI engine.

This module imports optimum-intel (and so torch) when it is imported; ``ov_causal`` imports it lazily.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

from optimum.intel import OVModelForCausalLM as OptimumCausalLM

from ..config.options import check_device
from ..config.presets import Compression, Preset, Runtime
from ..convert.cache import compiling
from ..convert.calibration import TextSource
from ..convert.gguf_routes import prepare_gguf
from ..convert.loading import (
    Prepared,
    find_tokenizer,
    manifest_for_ir,
    prepare_folder,
    runtime_config,
    stateful_error,
)
from ..convert.lora import LoraSpec
from ..convert.manifest import Manifest
from ..errors import LoraError, OptionError
from .adapters import PeftAdapterMethods
from .backends import GENAI_ONLY, GenAIEngine, has_ov_tokenizers, plan, tokenizers_ready
from .load_request import LoadOptions, Resolved, resolve_request
from .loader import fingerprint, load_optimum, ov_class, register_for_pipelines
from .saving import save_folder


class OVModelForCausalLM(OptimumCausalLM, PeftAdapterMethods):
    """optimum-intel's ``OVModelForCausalLM``, with ov_causal's presets, export cache and GenAI engine.

    ``from_pretrained`` accepts every keyword of optimum's (``export``, ``load_in_8bit``,
    ``quantization_config``, ``compile``, ``ov_config``, ``device``, ``use_cache``, ``stateful``, ...) with
    optimum's meaning, plus ov_causal's (``preset``, ``runtime``, ``lora``, ...). Every attribute and method
    of the parent keeps working (``model``, ``request``, ``compile()``, ``to()``, ``save_pretrained``).
    Where optimum builds a class of its own (phi3, gpt_bigcode, old bloom, SSM), the model is an instance
    of a subclass of both.

    Attributes:
        model: the ``openvino.Model``.
        tokenizer: the Hugging Face tokenizer found beside the model, or None.
        ov_manifest: how the export was made (source, preset, versions).
        ov_runtime: the runtime preset in force; ``ov_config`` holds the resulting properties.
        backend: the generation engine: 'auto', 'genai' or 'optimum'.
        last_engine: which engine served the last ``generate()`` call, and ``last_engine_reason`` why.
        ov_model_replaced: True once ``model.model`` was assigned (or ``half()`` called): GenAI, which runs the
            saved folder, then no longer serves ``generate()``.
        ov_auto_reason: why ``preset="auto"`` chose what it chose.
        ov_cache_hit: True when loaded from the export cache, False when exported into it, None when not cached.
    """

    _ov_base: ClassVar[type] = OptimumCausalLM  # the optimum-intel class this instance is built on
    tokenizer: Any = None
    ov_manifest: Manifest
    ov_runtime: Runtime
    ov_auto_reason: str | None = None
    ov_cache_hit: bool | None = None
    backend: str = "auto"
    last_engine: str | None = None
    last_engine_reason: str | None = None
    _genai: GenAIEngine | None = None
    _ov_workdir: tempfile.TemporaryDirectory | None = None
    _ov_entry_use: Any = None  # the export-cache entry's use lock: the size cap leaves a loaded entry alone
    _ov_compile_on_demand: bool = False  # compiled at load: `request` compiles again when read after being freed
    _ov_compiling: bool = False
    _ov_loaded_fingerprint: tuple[int, int] | None = None  # of model.model as loaded from model_save_dir
    ov_model_replaced: bool = False  # model.model was assigned since loading: GenAI (the saved folder) cannot serve
    _ov_overrides: dict[str, str] = {}  # the user's own ov_config keys (saved with the model)

    @property
    def request(self) -> Any:
        """optimum's infer request. Compiled when read, if the GenAI engine serves and it was never compiled."""
        request = self.__dict__.get("_ov_request")
        if request is None and self._ov_compile_on_demand and not self._ov_compiling:
            self.compile()
            request = self.__dict__.get("_ov_request")
        return request

    @request.setter
    def request(self, value: Any) -> None:
        self.__dict__["_ov_request"] = value

    @property
    def model(self) -> Any:
        """The ``openvino.Model``. Assigning another one (e.g. ``nncf.compress_weights(model.model)``) drops the
        compiled request, so that the next call compiles what was assigned."""
        return self.__dict__.get("_ov_model")

    @model.setter
    def model(self, value: Any) -> None:
        self.__dict__["_ov_model"] = value
        self.__dict__["_ov_request"] = None
        self.ov_model_replaced = True  # read by generate(): no walk over the graph on every call

    def half(self) -> OVModelForCausalLM:
        """optimum's ``half()``: the weights of ``model.model`` converted to fp16 in place (GenAI then no longer
        serves: it runs the saved folder)."""
        self._ov_base.half(self)
        self.ov_model_replaced = True
        return self

    def compile(self) -> None:
        """Compile the transformers-loop engine (optimum's ``compile``; called by optimum before every forward)."""
        self._ov_compiling = True
        try:
            # a blob cached in an export-cache entry is written under its lock
            with compiling(self.ov_config, self._device):
                self._ov_base.compile(self)
        finally:
            self._ov_compiling = False

    @property
    def compiled_model(self) -> Any:
        """The ``openvino.CompiledModel`` of the transformers-loop engine (compiled now if it is not yet).

        None with ``compile=False`` until ``compile()`` is called.
        """
        request = self.request
        return request.get_compiled_model() if request is not None else None

    @property
    def preset(self) -> str:
        return self.ov_manifest.preset

    @property
    def is_temporary(self) -> bool:
        """True when the export lives in a temporary folder (``cache=False``), removed with the model."""
        return self._ov_workdir is not None

    @property
    def device_name(self) -> str:
        """The OpenVINO device the model runs on, e.g. 'CPU'."""
        return self._device

    def to(self, device: str) -> OVModelForCausalLM:
        """Move to another OpenVINO device ('CPU', 'GPU', ...); recompiles on next use."""
        if not isinstance(device, str):
            raise OptionError(f"to({device!r}): pass an OpenVINO device name such as 'CPU' or 'GPU'.")
        self._genai = None
        return self._ov_base.to(self, check_device(device))

    def generate(self, inputs: Any = None, **kwargs: Any) -> Any:
        """``transformers``' ``generate``, served by OpenVINO GenAI when every argument maps to it.

        ``self.backend`` ('auto', 'genai', 'optimum') forces an engine; ``self.last_engine`` says
        which one served the last call and ``self.last_engine_reason`` why the GenAI engine was not used.
        """
        if inputs is not None:
            kwargs["input_ids"] = inputs
        decision = plan(self, kwargs, self.backend)  # the one place the engine is decided
        self.last_engine, self.last_engine_reason = decision.engine, decision.reason
        if decision.engine == "genai":
            engine = self._genai_engine()  # built by plan()
            with self.adapter_registry.running():
                return engine.generate(kwargs["input_ids"], kwargs.get("attention_mask"), decision.config, kwargs)
        self._ov_refuse_adapters(f"this generate() call needs the transformers loop ({decision.reason})")
        for key in GENAI_ONLY:
            if kwargs.pop(key, None) is not None:
                raise OptionError(f"{key}= exists only in the GenAI engine, which cannot serve this call "
                                  f"({self.last_engine_reason}): use backend='genai' or 'auto' and only "
                                  "settings GenAI has.")
        return self._ov_base.generate(self, **kwargs)

    @functools.wraps(OptimumCausalLM.forward)  # its signature: transformers reads which inputs forward() takes
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # optimum's ``forward`` (logits from the transformers-loop engine), refused while an adapter is active
        self._ov_refuse_adapters("forward() (logits) runs the transformers loop")
        return self._ov_base.forward(self, *args, **kwargs)

    def _ov_refuse_adapters(self, why: str) -> None:
        active = self.adapter_registry.effective()
        if active:
            raise LoraError(
                f"adapter(s) {', '.join(active)} are active, but {why}, which runs the base export: OpenVINO applies "
                "run-time adapters only in GenAI's generation loop. Use disable_adapters() for the base model's "
                "output, generate() with settings GenAI has, or fuse the adapter before export "
                "(from_pretrained(base, lora=folder)) to get logits with it."
            )

    def _genai_engine(self) -> GenAIEngine | None:
        if self._genai is None:
            folder = Path(self.model_save_dir)
            if not tokenizers_ready(folder, self.tokenizer):
                return None
            self._genai = GenAIEngine(folder, self._device, dict(self.ov_config), self.adapter_registry)
            self.request = None  # one compiled copy of the weights at a time; the fallback recompiles
        return self._genai

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write IR, config, generation config, HF and OpenVINO tokenizers and the manifest (see ``save_folder``)."""
        manifest = replace(self.ov_manifest, runtime=self.ov_runtime, ov_config=self._ov_overrides)
        unchanged = not self.ov_model_replaced and fingerprint(self.model) == self._ov_loaded_fingerprint
        save_folder(self, Path(save_directory), manifest, unchanged,
                    serialize=lambda folder: self._ov_base.save_pretrained(self, folder, **kwargs))

    def summary(self) -> list[tuple[str, Any]]:
        """(field, value) pairs: architecture, parameters, source, preset, runtime, device, engine, IR size, cache."""
        from .summary import model_summary

        return model_summary(self)

    def _repr_html_(self) -> str:
        """The summary as an HTML table: what Jupyter shows for ``model`` as the last line of a cell."""
        from ..ui.display import html_fields

        note = f"preset='auto': {self.ov_auto_reason}" if self.ov_auto_reason else ""
        return html_fields(self.summary(), caption=type(self).__name__, note=note)

    def __repr__(self) -> str:
        from .summary import describe

        return describe(self)


OVCausalLM = OVModelForCausalLM  # the name of earlier releases


def _compile_first_engine(model: Any) -> None:
    """Compile the engine that will serve ``generate``: GenAI's pipeline when it can (the transformers loop then
    compiles on its first use, or when ``model.request`` is read), so that the process never holds two compiled
    copies of the weights at load."""
    ready = has_ov_tokenizers(Path(model.model_save_dir))
    if model.backend != "optimum" and model.stateful and ready and model._genai_engine() is not None:
        model._genai.pipeline()
    else:
        model.compile()


def _attach(model: Any, resolved: Resolved, prepared: Prepared, runtime: Runtime, backend: str) -> Any:
    """Stage 4: make the optimum model ours and give it what ov_causal knows about it."""
    ir, request = model.__dict__.pop("model"), model.__dict__.pop("request", None)
    model.__class__ = ov_class(type(model), OVModelForCausalLM)  # `model`, `request` become properties: set again
    model.model, model.request = ir, request
    model.ov_model_replaced = False  # set again by the line above: it is the model as loaded
    register_for_pipelines(model)
    model._ov_workdir = prepared.workdir
    model._ov_entry_use = None if prepared.cache is None else prepared.cache.use
    model.ov_cache_hit = None if prepared.cache is None else prepared.cache.hit
    model.ov_auto_reason = resolved.auto_reason
    model.backend = backend  # checked by LoadOptions
    model._ov_loaded_fingerprint = fingerprint(model.model)
    model.ov_manifest = prepared.manifest or manifest_for_ir(model, resolved.source.name)
    model.ov_runtime = runtime
    model._ov_overrides = resolved.overrides
    return model


def load_model(
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
) -> OVModelForCausalLM:
    """Load an OpenVINO export, or export a Hugging Face checkpoint on the fly (``from_pretrained``).

    The request is resolved, the folder found in the export cache or built, the IR read by optimum-intel;
    the model is then made an ``OVModelForCausalLM`` and its first engine compiled (unless ``compile=False``).

    Args:
        pretrained_model_name_or_path: Hub id, checkpoint folder, OpenVINO export folder, or a llama.cpp ``.gguf``
            file (kept with its own quantization unless ``preset=`` asks to dequantize it; see ``gguf_file``).
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
        **kwargs: transformers keywords (``gguf_file``: a GGUF file in the folder or Hub repo; ``revision``, ``token``,
            ``trust_remote_code``,
            ``torch_dtype``, ``device_map``, ...): applied, or ignored with a warning.

    Example:
        >>> model = AutoModelForCausalLM.from_pretrained("org/model", preset="int4_asym_g64")
    """
    given = locals()  # the keywords above, by name: LoadOptions has a field for each (tests/test_plan.py)
    options = LoadOptions(**{f.name: given[f.name] for f in fields(LoadOptions)})
    resolved = resolve_request(pretrained_model_name_or_path, options, kwargs)  # source, export, runtime asked
    prepare = prepare_gguf if resolved.source.kind == "gguf" else prepare_folder
    prepared = prepare(resolved.source, resolved.request)  # the export cache's folder, built if needed
    runtime, full_config = runtime_config(resolved.runtime, resolved.overrides, prepared, resolved.source.kind,
                                          resolved.device, options.ov_config is not None)
    ir_model = load_optimum(prepared.folder, full_config, resolved)  # optimum reads the IR, not compiled yet
    if options.stateful is not None and options.stateful != ir_model.stateful:
        raise stateful_error(prepared.folder, options.stateful)
    model = _attach(ir_model, resolved, prepared, runtime, options.backend)
    model.tokenizer = find_tokenizer(prepared.folder, resolved.request.hub) if options.load_tokenizer else None
    model._ov_compile_on_demand = options.compile
    if options.compile:
        try:
            _compile_first_engine(model)
        except RuntimeError as exc:
            raise OptionError(
                f"OpenVINO refused to compile for {resolved.device} with ov_config={full_config}: {exc}"
            ) from exc
    return model


OVModelForCausalLM.from_pretrained = staticmethod(load_model)  # its keywords for inspect.signature and help()


class AutoModelForCausalLM:
    """Drop-in for ``transformers.AutoModelForCausalLM``: returns an ``OVModelForCausalLM``."""

    def __init__(self) -> None:
        raise TypeError("use AutoModelForCausalLM.from_pretrained(...)")

    from_pretrained = staticmethod(load_model)
