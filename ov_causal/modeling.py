"""``AutoModelForCausalLM.from_pretrained``: load or export a model, compress it, compile it for a device."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .cache import compiling
from .engines import GenAIEngine, Plan, check_backend, has_ov_tokenizers, plan, tokenizers_ready
from .errors import ExportError, OptionError, PresetError, UnsupportedModelError
from .export import IR_FILES, TOKENIZER_FILES, convert_tokenizer, publish, staging_folder
from .hfcompat import quiet_offline_folder_check, resolve_hf_kwargs
from .loading import ExportRequest, damaged_ir, find_tokenizer, manifest_for_ir, prepare_folder, stateful_error
from .lora import LoraSpec, parse_adapters
from .manifest import Manifest
from .options import check_device, validate_ov_config
from .presets import (
    DEFAULT_RUNTIME,
    Compression,
    Preset,
    Runtime,
    get_runtime,
    resolve_compression,
    resolve_runtime,
)
from .sources import resolve_source
from .texts import TextSource, load_texts


class OVCausalLM:
    """What ov_causal adds to the optimum-intel model class it loads (mixed in by the factory).

    Attributes:
        model: the ``openvino.Model``.
        tokenizer: the Hugging Face tokenizer found beside the model, or None.
        ov_manifest: how the export was made (source, preset, versions).
        ov_runtime: the runtime preset in force; ``ov_config`` holds the resulting properties.
    """

    _ov_base: type  # the optimum-intel class this instance was built as
    tokenizer: Any
    ov_manifest: Manifest
    ov_runtime: Runtime
    backend: str  # 'auto', 'genai' or 'optimum'
    last_engine: str | None  # which engine served the last generate() call
    last_engine_reason: str | None
    _genai: GenAIEngine | None
    ov_auto_reason: str | None  # why preset="auto" chose what it chose
    ov_cache_hit: bool | None  # True: loaded from the export cache; False: exported into it; None: not cached
    _ov_workdir: tempfile.TemporaryDirectory | None

    @property
    def compiled_model(self) -> Any:
        """The ``openvino.CompiledModel`` of the transformers-loop engine (compiled now if it is not yet).

        None with ``compile=False`` until ``compile()`` is called.
        """
        if self.request is None and self._ov_compile_on_demand:
            self.compile()
        return self.request.get_compiled_model() if self.request is not None else None

    @property
    def preset(self) -> str:
        return self.ov_manifest.preset

    def compile(self) -> None:
        """Compile the transformers-loop engine; a blob OpenVINO caches in an export-cache entry is written under
        that entry's lock, so a concurrent process never maps it half-written."""
        with compiling(self.ov_config):
            self._ov_base.compile(self)

    def to(self, device: str) -> OVCausalLM:
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
        decision = plan(self, kwargs, self.backend)
        if decision.engine == "genai" and not self.stateful:
            decision = Plan("optimum", "a stateless export (GenAI needs the stateful form)")
        engine = self._genai_engine() if decision.engine == "genai" else None
        if engine is not None:
            self.last_engine, self.last_engine_reason = "genai", ""
            return engine.generate(kwargs["input_ids"], kwargs.get("attention_mask"), decision.config, kwargs)
        self.last_engine, self.last_engine_reason = "optimum", decision.reason or "GenAI engine unavailable"
        for key in ("presence_penalty", "frequency_penalty"):
            if kwargs.pop(key, None) is not None:
                raise OptionError(f"{key}= exists only in the GenAI engine, which cannot serve this call "
                                  f"({self.last_engine_reason}).")
        return self._ov_base.generate(self, **kwargs)

    def _genai_engine(self) -> GenAIEngine | None:
        if self._genai is None:
            folder = Path(self.model_save_dir)
            if not tokenizers_ready(folder, self.tokenizer):
                return None
            self._genai = GenAIEngine(folder, self._device, dict(self.ov_config))
            self.request = None  # one compiled copy of the weights at a time; the fallback recompiles
        return self._genai

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write IR, config, generation config, HF and OpenVINO tokenizers and the manifest.

        The folder is built beside ``save_directory`` and moved into place when complete. An IR
        unchanged since loading (same object, same number of ops) is copied byte for byte: optimum
        would re-serialize it with the in-memory KV-cache precision of a stateless model baked in.
        """
        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise ExportError(f"cannot save into {str(target)!r}: it is a file. Pass a folder path.")
        with staging_folder(target) as tmp:
            if _fingerprint(self.model) == self._ov_loaded_fingerprint:
                for name in IR_FILES:
                    shutil.copy2(Path(self.model_save_dir) / name, tmp / name)
                self.config.save_pretrained(tmp)
                if self.generation_config is not None:
                    self.generation_config.save_pretrained(tmp)
            else:  # the user replaced model.model (e.g. nncf.compress_weights): serialize it
                self._ov_base.save_pretrained(self, tmp, **kwargs)
            self._save_tokenizers(tmp)
            replace(self.ov_manifest, runtime=self.ov_runtime, ov_config=self._ov_overrides).write(tmp)
            publish(tmp, target)

    def _save_tokenizers(self, folder: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        source = Path(self.model_save_dir)
        if all((source / name).is_file() for name in TOKENIZER_FILES):
            for name in TOKENIZER_FILES:
                shutil.copy2(source / name, folder / name)
        elif self.tokenizer is not None:
            convert_tokenizer(self.tokenizer, folder)

    def summary(self) -> list[tuple[str, Any]]:
        """(field, value) pairs: architecture, parameters, source, preset, runtime, device, engine, IR size, cache."""
        from .display import model_summary

        return model_summary(self)

    def _repr_html_(self) -> str:
        """The summary as an HTML table: what Jupyter shows for ``model`` as the last line of a cell."""
        from .display import html_fields

        note = f"preset='auto': {self.ov_auto_reason}" if self.ov_auto_reason else ""
        return html_fields(self.summary(), caption=type(self).__name__, note=note)

    def __repr__(self) -> str:
        m = self.ov_manifest
        return (
            f"{type(self).__name__}(source={m.source!r}, model_type={self.config.model_type!r}, "
            f"preset={m.preset!r}, weights={m.compression.describe()!r}, runtime={self.ov_runtime.name!r}, "
            f"device={self._device!r}, stateful={self.stateful})"
        )


def _fingerprint(model: Any) -> tuple[int, int]:
    """Identity and op count: tells whether ``model.model`` was replaced or rewritten (e.g. by NNCF) since loading."""
    return id(model), len(model.get_ops())


_CLASSES: dict[type, type] = {}


def _ov_class(optimum_class: type) -> type:
    """A subclass of whichever class optimum-intel chose (phi3, bloom, SSM... have their own) with our methods.

    ``OVCausalLM`` comes after the optimum class among the bases (CPython only allows re-classing an
    instance to a class whose first base has its layout), so its methods are copied in to take precedence.
    """
    if optimum_class not in _CLASSES:
        suffix = optimum_class.__name__.removeprefix("OV").removeprefix("ModelFor")
        name = f"OVCausal{suffix}" if suffix != "CausalLM" else "OVCausalLM"
        namespace = {k: v for k, v in vars(OVCausalLM).items() if k not in ("__dict__", "__weakref__")}
        namespace.update(__module__=__name__, __qualname__=name, _ov_base=optimum_class)
        _CLASSES[optimum_class] = type(name, (optimum_class, OVCausalLM), namespace)
    return _CLASSES[optimum_class]


def _compile_first_engine(model: Any) -> None:
    """Compile the engine that will serve ``generate``: GenAI's pipeline when it can (the transformers loop then
    compiles on its first use), so that the process never holds two compiled copies of the weights at load."""
    ready = has_ov_tokenizers(Path(model.model_save_dir))
    if model.backend != "optimum" and model.stateful and ready and model._genai_engine() is not None:
        model._genai.pipeline()
    else:
        model.compile()


def _register_for_pipelines(model: Any) -> None:
    """Name our class in transformers' causal-LM mapping, as optimum does for its own at construction, so that
    ``transformers.pipeline`` accepts the model without logging "not supported for text-generation"."""
    from transformers import AutoConfig

    model.auto_model_class.register(AutoConfig, type(model), exist_ok=True)


def _auto(model_id: Any, hub: Any, ov_cache_dir: Any) -> tuple[str | None, str]:
    """``preset="auto"``: the tuned choice or the documented rule (see ``ov_causal.tune.auto_preset``)."""
    from .sources import count_parameters
    from .tune import auto_preset

    source = resolve_source(model_id, hub)
    if source.kind == "openvino":
        return None, "auto on an OpenVINO export: its weights are kept as they are"
    return auto_preset(os.fspath(model_id), count_parameters(source.path), ov_cache_dir)


class AutoModelForCausalLM:
    """Drop-in for ``transformers.AutoModelForCausalLM``: returns an OpenVINO model with the same API."""

    def __init__(self) -> None:
        raise TypeError("use AutoModelForCausalLM.from_pretrained(...)")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        preset: str | Preset | Compression | None = None,
        runtime: str | Runtime | None = None,
        ov_config: Mapping[str, Any] | None = None,
        group_size: int | None = None,
        ratio: float | None = None,
        dq_group_size: int | None = None,
        stateful: bool | None = None,
        device: str = "CPU",
        compile: bool = True,
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
        **kwargs: Any,
    ) -> OVCausalLM:
        """Load an OpenVINO export, or export a Hugging Face checkpoint on the fly.

        Args:
            pretrained_model_name_or_path: Hub id, checkpoint folder, or OpenVINO export folder.
            preset: weight compression: a name (``int8``, ``int4_asym_g64``, ``fp16``, ...), a
                ``Preset`` or a ``Compression``. Default: int8 above 1B parameters, none below.
                ``"auto"``: the choice ``ov-causal tune`` made for this model, else a rule by size and CPU.
            runtime: ``latency`` (default), ``throughput``, ``accuracy``, ``memory`` or a ``Runtime``;
                an export folder restores the runtime it was saved with.
            ov_config: raw OpenVINO properties; each key overrides the runtime preset's.
            group_size: int4 override of the preset's group size.
            ratio: int4 override: share of layers in int4, the rest in int8.
            dq_group_size: dynamic quantization group size (32, 64, 128; 0 turns it off).
            stateful: KV cache inside the model (default True for exports; an export folder keeps its form).
            device: OpenVINO device, e.g. ``CPU`` or ``GPU``.
            compile: False defers compilation (use ``model.model`` for native access).
            load_tokenizer: load the Hugging Face tokenizer found with the model as ``model.tokenizer``.
            lora: PEFT LoRA adapter folder(s) fused into the base before export: a path,
                ``{path: weight}`` or a list of (path, weight) pairs.
            lora_allow_pickle: accept pickle adapters (``adapter_model.bin``); unpickling runs code.
            cache: reuse (and publish) exports in the persistent cache; False exports to a temporary folder.
            ov_cache_dir: cache location (default ``$OV_CAUSAL_CACHE_DIR`` or ``~/.cache/ov_causal``).
            calibration: text for data-aware int4 (a file, a string or a list of strings; no Hub dataset).
            backend: generation engine: ``auto`` (OpenVINO GenAI when the call maps to it, else the
                transformers loop), ``genai`` or ``optimum``.
            awq: int4 override: NNCF's AWQ (data-aware, needs ``calibration``).
            scale_estimation: int4 override: NNCF's scale estimation (data-aware).
            gptq: int4 override: NNCF's GPTQ (data-aware).
            sensitivity: int4 override: the metric that ranks layers for ``ratio`` < 1 (see
                ``SENSITIVITY_METRICS``).
            **kwargs: transformers keywords (``revision``, ``token``, ``trust_remote_code``,
                ``torch_dtype``, ``device_map``, ...): applied, or ignored with a warning.

        Example:
            >>> model = AutoModelForCausalLM.from_pretrained("org/model", preset="int4_asym_g64")
        """
        from optimum.intel import OVModelForCausalLM

        hub = resolve_hf_kwargs(kwargs)
        device = check_device(device)
        auto_reason = None
        if preset == "auto":
            preset, auto_reason = _auto(pretrained_model_name_or_path, hub, ov_cache_dir)
        name, compression = resolve_compression(
            preset, group_size=group_size, ratio=ratio, awq=awq, scale_estimation=scale_estimation, gptq=gptq,
            sensitivity=sensitivity,
        )
        if hub.dtype_preset is not None:
            if compression is None:
                name, compression = resolve_compression(hub.dtype_preset)
            else:
                warnings.warn(f"torch_dtype/dtype is ignored: preset={name!r} sets the weights.", stacklevel=2)
        runtime_preset = resolve_runtime(runtime, preset, dq_group_size)
        overrides = validate_ov_config(ov_config or {}, device)
        source = resolve_source(pretrained_model_name_or_path, hub)

        request = ExportRequest(
            name, compression, stateful, hub, tuple(parse_adapters(lora)), lora_allow_pickle, cache,
            None if ov_cache_dir is None else os.fspath(ov_cache_dir),
            tuple(load_texts(calibration, "calibration")) if calibration is not None else (),
        )
        if compression is not None and compression.data_aware and not request.calibration:
            raise PresetError(
                f"preset {name!r} ({compression.describe()}) is data-aware: pass calibration= (a file, a string or "
                "a list of strings of the text the model will see)."
            )
        prepared = prepare_folder(source, request)
        folder, manifest = prepared.folder, prepared.manifest
        if manifest is not None and source.kind == "openvino" and runtime is None and ov_config is None:
            runtime_preset, overrides = runtime_preset or manifest.runtime, {**manifest.ov_config, **overrides}
        runtime_preset = runtime_preset or get_runtime(DEFAULT_RUNTIME)
        full_config = validate_ov_config({**runtime_preset.ov_config(), **overrides}, device)
        if prepared.cache is not None:  # compiled blobs beside the cached export: later loads skip compilation
            full_config.setdefault("CACHE_DIR", str(prepared.cache.compiled_dir))
        try:
            with quiet_offline_folder_check():
                model = OVModelForCausalLM.from_pretrained(
                    str(folder), export=False, ov_config=full_config, device=device, compile=False,
                    use_cache=hub.use_cache,
                )
        except ValueError as exc:
            raise UnsupportedModelError(f"OpenVINO could not load {str(folder)!r}: {exc}") from exc
        except RuntimeError as exc:  # OpenVINO's "Unable to read the model", "Incorrect weights in bin file"
            raise damaged_ir(folder, exc) from exc
        if stateful is not None and stateful != model.stateful:
            raise stateful_error(folder, stateful)
        if manifest is None:
            manifest = manifest_for_ir(model, source.name)
        model.__class__ = _ov_class(type(model))
        _register_for_pipelines(model)
        model._ov_workdir = prepared.workdir
        model.ov_cache_hit = None if prepared.cache is None else prepared.cache.hit
        model.ov_auto_reason = auto_reason
        model.backend = check_backend(backend)
        model._genai = None
        model._ov_compile_on_demand = compile
        model.last_engine = model.last_engine_reason = None
        model._ov_loaded_fingerprint = _fingerprint(model.model)
        model.ov_manifest = manifest
        model.ov_runtime = runtime_preset
        model._ov_overrides = overrides
        model.tokenizer = find_tokenizer(folder, hub) if load_tokenizer else None
        if compile:
            try:
                _compile_first_engine(model)
            except RuntimeError as exc:
                raise OptionError(
                    f"OpenVINO refused to compile for {device} with ov_config={full_config}: {exc}"
                ) from exc
        return model
