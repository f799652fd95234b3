"""Run-time LoRA adapters: the ``PeftAdapterMixin`` methods transformers models have, applied by OpenVINO GenAI.

The base stays exported once; each adapter is read, checked against the export and handed to GenAI's LLMPipeline
(``openvino_genai.Adapter``), which applies the active set at every ``generate()`` call. What GenAI 2026.4.1 does,
measured (tiny llama, two PEFT adapters, greedy):

- a pipeline built without adapters ignores adapters passed per call; one built with an adapter applies, per call,
  any adapter whose modules the adapters it was built with cover (others are skipped with a stdout warning). So
  the pipeline is built with every loaded adapter registered at weight 0, and rebuilt when an adapter brings
  modules it does not cover;
- a call whose ``GenerationConfig`` sets no adapters runs with the previous call's: every call sets them;
- modes: DYNAMIC (= AUTO on CPU) switches per call, exactly; STATIC and FUSE apply the set the pipeline was built
  with and ignore per-call adapters (so a switch rebuilds it); STATIC_RANK fails unless every call's total rank
  equals the build's, so it is not offered.

This registry is the engine-side state a server can reuse: ``call_config`` is one request's adapters.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import LoraError, ModelSourceError, OptionError, suggest
from .adapter_files import AdapterFile, base_layers, checked, read_adapter
from .backends import model_not_for_genai

MODES = {"dynamic": "MODE_DYNAMIC", "static": "MODE_STATIC", "fuse": "MODE_FUSE"}
DEFAULT_MODE = "dynamic"  # measured fastest for the common case (docs/lora.md): switching costs nothing
# transformers' load_adapter keywords about fetching from the Hub or placing torch weights: no meaning for a
# local folder applied by OpenVINO, accepted so that code written for transformers runs.
IGNORED_KEYWORDS = {"low_cpu_mem_usage", "local_files_only", "device_map", "max_memory", "offload_folder",
                    "offload_index", "adapter_kwargs", "load_config", "token", "revision"}
AdapterSpec = str | Sequence[str] | Mapping[str, float]


class AdapterRegistry:
    """The adapters loaded on a model (checked, as GenAI adapters), which are active with what weight, the mode."""

    def __init__(self) -> None:
        self.loaded: dict[str, AdapterFile] = {}
        self.active: dict[str, float] = {}
        self.enabled = True
        self.mode = DEFAULT_MODE
        self._layers: dict[str, tuple[int, int]] | None = None
        self._running = 0
        self._lock = threading.Lock()

    def layers(self, ir: Any) -> dict[str, tuple[int, int]]:
        if self._layers is None:
            self._layers = base_layers(ir)
        return self._layers

    def effective(self) -> dict[str, float]:
        """The adapters the next call applies, with their weights ({} when none, or disabled)."""
        return dict(self.active) if self.enabled else {}

    def set_active(self, spec: AdapterSpec) -> None:
        self.active = self.parse(spec)

    def parse(self, spec: AdapterSpec) -> dict[str, float]:
        """A name, a list of names (each at weight 1, as PEFT sums active adapters) or ``{name: weight}``."""
        if not self.loaded:
            raise LoraError("No adapter loaded. Please load an adapter first: model.load_adapter(folder, 'name').")
        if isinstance(spec, str):
            items: list[tuple[Any, Any]] = [(spec, 1.0)]
        elif isinstance(spec, Mapping):
            items = list(spec.items())
        elif isinstance(spec, Sequence):
            items = [(name, 1.0) for name in spec]
        else:
            raise LoraError(f"set_adapter({spec!r}): pass a name, a list of names or {{name: weight}}.")
        if not items:
            raise LoraError("set_adapter() got no adapter names: use disable_adapters() to run the base model.")
        for name, weight in items:
            self._check(name, weight)
        return {name: float(weight) for name, weight in items}

    def _check(self, name: Any, weight: Any) -> None:
        if name not in self.loaded:
            raise LoraError(f"Adapter {name!r} is not loaded.{suggest(str(name), self.loaded)} Loaded adapters: "
                            f"{', '.join(map(repr, self.loaded))}.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or abs(weight) > 10:
            raise LoraError(f"the weight of adapter {name!r} is {weight!r}: use a finite number within [-10, 10], "
                            "e.g. {'a': 0.7, 'b': 0.3}.")

    def refuse_while_running(self, what: str) -> None:
        if self._running:
            raise LoraError(f"{what} while generate() runs on this model: it would rebuild the engine under the "
                            "running call. Call it between generate() calls (the model keeps working as it was).")

    @contextmanager
    def running(self) -> Iterator[None]:
        """Marks a generate() call in progress (loading or deleting an adapter meanwhile is refused)."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    # --- what the GenAI engine asks (GenAIEngine.pipeline / generate) ---

    def signature(self) -> tuple | None:
        """What the plain pipeline must be built with: None (no adapters), ('dynamic', modules covered) or
        (mode, ((name, weight), ...)) for a fixed set."""
        if self.mode == "dynamic":
            modules = frozenset().union(*(a.modules for a in self.loaded.values()))
            return ("dynamic", modules) if modules else None
        active = self.effective()
        return (self.mode, tuple(sorted(active.items()))) if active else None

    @staticmethod
    def serves(built: tuple | None, wanted: tuple | None) -> bool:
        """Whether a pipeline built for ``built`` serves ``wanted`` (a dynamic one covering more serves)."""
        if built == wanted:
            return True
        if built is None or built[0] != "dynamic":
            return False
        return wanted is None or (wanted[0] == "dynamic" and wanted[1] <= built[1])

    def pipeline_options(self, wanted: tuple | None) -> dict[str, Any]:
        """LLMPipeline keywords for a pipeline built for ``wanted``."""
        import openvino_genai

        if wanted is None:
            return {}
        mode = getattr(openvino_genai.AdapterConfig.Mode, MODES[wanted[0]])
        if wanted[0] == "dynamic":
            pairs = [(a.genai, 0.0) for a in self.loaded.values()]
        else:
            pairs = [(self.loaded[name].genai, weight) for name, weight in wanted[1]]
        return {"adapters": openvino_genai.AdapterConfig(pairs, mode)}

    def call_config(self, built: tuple | None) -> Any:
        """One call's ``GenerationConfig.adapters`` on a pipeline built for ``built`` (None: leave unset)."""
        import openvino_genai

        if built is None or built[0] != "dynamic":
            return None
        return openvino_genai.AdapterConfig([(self.loaded[n].genai, w) for n, w in self.effective().items()])


def resolve_folder(peft_model_id: str | Path, token: Any = None, revision: str | None = None) -> Path:
    """A local adapter folder, or a Hub repository's adapter files downloaded (into the Hugging Face cache)."""
    path = Path(peft_model_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelSourceError(f"{str(path)!r} is a file: load_adapter takes the adapter's folder (the one holding "
                               "adapter_config.json and adapter_model.safetensors).")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(peft_model_id), revision=revision, token=token,
                                      allow_patterns=["adapter_config.json", "adapter_model.safetensors"]))
    except Exception as exc:  # offline, unknown repository, bad id: huggingface_hub raises many types
        raise ModelSourceError(
            f"LoRA adapter {str(peft_model_id)!r} is neither a local folder nor a reachable Hub repository "
            f"({type(exc).__name__}). Pass the folder PEFT's save_pretrained wrote."
        ) from exc


def load_adapter_file(model: Any, peft_model_id: Any, peft_config: Any, adapter_state_dict: Any,
                      allow_pickle: bool, hub: Mapping[str, Any]) -> AdapterFile:
    """Read and check an adapter for ``model`` from a folder (or Hub id), or from a config and state dict."""
    registry: AdapterRegistry = model.adapter_registry
    layers = registry.layers(model.model)
    if adapter_state_dict is not None:
        if peft_config is None:
            raise LoraError("adapter_state_dict= needs peft_config= (the adapter's LoraConfig or its dict).")
        config = peft_config if isinstance(peft_config, Mapping) else peft_config.to_dict()
        return checked("adapter_state_dict", None, dict(config), adapter_state_dict, layers)
    if peft_model_id is None:
        raise LoraError("load_adapter() needs the adapter's folder (peft_model_id), or peft_config= and "
                        "adapter_state_dict=.")
    folder = resolve_folder(peft_model_id, hub.get("token"), hub.get("revision"))
    return read_adapter(folder, layers, allow_pickle)


def genai_unavailable(model: Any) -> str:
    """Why the GenAI engine cannot apply run-time adapters to this model ('' when it can)."""
    if model.backend == "optimum":
        return "backend='optimum' (the transformers loop runs the base export as it is)"
    return model_not_for_genai(model)


def engine_message(exc: Exception) -> str:
    """The telling line of an OpenVINO exception (its first lines name C++ source files)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    return (telling or lines or [type(exc).__name__])[-1][:300]


def check_keywords(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - IGNORED_KEYWORDS)
    if unknown:
        raise OptionError(f"load_adapter() got unknown keyword(s) {', '.join(unknown)}: it takes peft_model_id, "
                          "adapter_name, peft_config, adapter_state_dict, hotswap, allow_pickle (and transformers' "
                          f"loading keywords {', '.join(sorted(IGNORED_KEYWORDS))}, which change nothing here).")


def peft_config_of(adapter: AdapterFile) -> Any:
    """The adapter's ``peft.LoraConfig`` (what transformers' ``model.peft_config[name]`` holds)."""
    from dataclasses import fields

    from peft import LoraConfig

    known = {f.name for f in fields(LoraConfig)}
    try:
        return LoraConfig(**{k: v for k, v in adapter.config.items() if k in known})
    except (TypeError, ValueError):  # a config newer PEFT versions write: give the dict as read
        return dict(adapter.config)


class PeftAdapterMethods:
    """transformers' ``PeftAdapterMixin`` methods on an OpenVINO model: LoRA adapters applied at run time by GenAI.

    Same names and meaning as on a transformers model (the first adapter loaded becomes active; ``set_adapter``
    takes a name or a list of names), plus weighted mixes: ``set_adapter({"a": 0.7, "b": 0.3})``. Adapters change
    what ``generate()`` returns through the GenAI engine; calls that need the transformers loop (``forward()``
    and its logits, generate settings only transformers has) raise ``LoraError`` while an adapter is active.
    """

    __slots__ = ()  # a mixin: no instance layout of its own (models are re-classed, see loader.ov_class)

    @property
    def adapter_registry(self) -> AdapterRegistry:
        """The model's adapters as the engine sees them (created on first use)."""
        return self.__dict__.setdefault("_ov_adapter_registry", AdapterRegistry())

    def load_adapter(
        self,
        peft_model_id: str | Path | None = None,
        adapter_name: str | None = None,
        peft_config: Any = None,
        adapter_state_dict: Mapping[str, Any] | None = None,
        is_trainable: bool = False,
        hotswap: bool | str = "auto",
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> None:
        """Load a PEFT LoRA adapter for run-time use (no re-export; the base stays as it is).

        Args:
            peft_model_id: the adapter folder PEFT's ``save_pretrained`` wrote, or a Hub id.
            adapter_name: its name for ``set_adapter`` (default ``"default"``).
            peft_config, adapter_state_dict: an adapter given in memory instead (a LoraConfig or its dict, and
                PEFT's state dict).
            is_trainable: must be False: OpenVINO runs inference only.
            hotswap: True replaces the adapter of the same name.
            allow_pickle: accept a pickle ``adapter_model.bin`` (unpickling runs code).
            **kwargs: transformers' Hub and device keywords (``token``, ``revision``, ``device_map``, ...).

        Raises:
            LoraError: the adapter does not fit this base (modules, shapes), holds NaN/Inf, its rank or alpha does
                not match its config, or a generate() is running; the model keeps working as before.

        Example:
            >>> model.load_adapter("my-adapter", adapter_name="sql")
        """
        check_keywords(kwargs)
        registry = self.adapter_registry
        registry.refuse_while_running("load_adapter()")
        if is_trainable:
            raise LoraError("load_adapter(is_trainable=True): OpenVINO runs inference only. Train with PEFT on the "
                            "torch model, save_pretrained, then load_adapter(folder).")
        name = adapter_name or "default"
        if name in registry.loaded and hotswap is not True:
            raise LoraError(f"Adapter with name {name} already exists. Please use a different name, or "
                            "hotswap=True to replace it.")
        reason = genai_unavailable(self)
        if reason:
            raise LoraError(f"run-time adapters are applied by the GenAI engine, which cannot serve this model: "
                            f"{reason}. Fuse the adapter before export instead: from_pretrained(base, lora=folder).")
        adapter = load_adapter_file(self, peft_model_id, peft_config, adapter_state_dict, allow_pickle, kwargs)
        previous = (dict(registry.loaded), dict(registry.active))
        registry.loaded[name] = adapter
        if not registry.active:
            registry.active = {name: 1.0}  # as in transformers: the first adapter loaded is the active one
        try:
            self._ov_apply_adapters()
        except RuntimeError as exc:
            registry.loaded, registry.active = previous
            raise LoraError(f"{adapter.source}: OpenVINO GenAI refused the adapter ({engine_message(exc)}). "
                            "The model keeps its previous adapters.") from exc

    def add_adapter(self, adapter_config: Any, adapter_name: str | None = None) -> None:
        """Not supported: transformers' ``add_adapter`` creates a fresh adapter to train, and OpenVINO runs inference
        only."""
        raise LoraError(
            f"add_adapter({type(adapter_config).__name__}, {adapter_name!r}) creates a new, untrained adapter for "
            "training, and ov_causal models run inference only. Train with PEFT on the torch model "
            "(get_peft_model), save_pretrained, then model.load_adapter(folder)."
        )

    def set_adapter(self, adapter_name: AdapterSpec) -> None:
        """Make these adapters the active ones: a name, a list of names (summed, as PEFT does) or ``{name: weight}``.

        Example:
            >>> model.set_adapter({"sql": 0.7, "chat": 0.3})
        """
        registry = self.adapter_registry
        active = registry.parse(adapter_name)
        previous, registry.active = registry.active, active
        self._ov_switch(previous, registry.enabled)

    def disable_adapters(self) -> None:
        """Run the base model (the adapters stay loaded; ``enable_adapters()`` brings the active ones back)."""
        registry = self.adapter_registry
        registry.parse(list(registry.active) or list(registry.loaded)[:1])  # "No adapter loaded" when none
        previous, registry.enabled = registry.enabled, False
        self._ov_switch(registry.active, previous)

    def enable_adapters(self) -> None:
        """Apply the active adapters again after ``disable_adapters()``."""
        registry = self.adapter_registry
        registry.parse(list(registry.active) or list(registry.loaded)[:1])
        previous, registry.enabled = registry.enabled, True
        self._ov_switch(registry.active, previous)

    def active_adapters(self) -> list[str]:
        """The names of the active adapters (as transformers: also while disabled)."""
        registry = self.adapter_registry
        registry.parse(list(registry.loaded)[:1])  # "No adapter loaded" when none
        return list(registry.active)

    def active_adapter_weights(self) -> dict[str, float]:
        """The adapters the next ``generate()`` applies, with their weights ({} when disabled or none loaded)."""
        return self.adapter_registry.effective()

    def delete_adapter(self, adapter_names: str | Sequence[str]) -> None:
        """Unload adapter(s); deleting an active one leaves the rest of the active set (or the base) running."""
        registry = self.adapter_registry
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if not registry.loaded:
            raise LoraError("No adapter loaded. Please load an adapter first.")
        missing = [n for n in names if n not in registry.loaded]
        if missing:
            raise LoraError(f"The following adapter(s) are not present and cannot be deleted: {', '.join(missing)} "
                            f"(loaded: {', '.join(registry.loaded)}).")
        registry.refuse_while_running("delete_adapter()")
        for name in names:
            registry.loaded.pop(name)
            registry.active.pop(name, None)
        self._ov_apply_adapters()

    @property
    def peft_config(self) -> dict[str, Any]:
        """Each loaded adapter's ``peft.LoraConfig``, by name (as on a transformers model)."""
        return {name: peft_config_of(a) for name, a in self.adapter_registry.loaded.items()}

    @property
    def _hf_peft_config_loaded(self) -> bool:  # read by transformers' and PEFT's helpers
        return bool(self.adapter_registry.loaded)

    @property
    def adapter_mode(self) -> str:
        """How GenAI applies the adapters: 'dynamic' (default: switch per call at no cost), 'static' or 'fuse'
        (the active set built into the engine: decode at the base's speed, each switch recompiles)."""
        return self.adapter_registry.mode

    @adapter_mode.setter
    def adapter_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise LoraError(f"adapter_mode={mode!r} is not valid: use one of {', '.join(MODES)}.{suggest(mode, MODES)}")
        weights = self.ov_manifest.compression.weights
        if mode == "fuse" and weights in ("int8", "int4"):
            raise LoraError(f"adapter_mode='fuse' needs fp32/fp16 weights (OpenVINO GenAI cannot fuse into {weights} "
                            "ones), and this export is " + weights + ". Use 'dynamic' or 'static', or fuse before "
                            "export and compression: from_pretrained(base_checkpoint, lora=folder).")
        previous, self.adapter_registry.mode = self.adapter_registry.mode, mode
        if self.adapter_registry.loaded:
            self._ov_switch(self.adapter_registry.active, self.adapter_registry.enabled, previous)

    def _ov_switch(self, previous_active: dict[str, float], previous_enabled: bool,
                   previous_mode: str | None = None) -> None:
        """Build what the new active set needs (nothing in dynamic mode); on failure restore the previous set."""
        registry = self.adapter_registry
        try:
            self._ov_apply_adapters()
        except RuntimeError as exc:
            registry.active, registry.enabled = previous_active, previous_enabled
            registry.mode = previous_mode or registry.mode
            raise LoraError(f"OpenVINO GenAI could not apply adapters {registry.effective()} "
                            f"({engine_message(exc)}); the previous ones stay active.") from exc

    def _ov_apply_adapters(self) -> None:
        engine = self._genai_engine()
        if engine is not None:
            engine.pipeline()  # the plain pipeline for the current adapters: built now, not at the next call
