"""LoRA adapters served by name: read and checked once at start, registered on the engine, one set at a time.

OpenVINO GenAI 2026.4.1's ``ContinuousBatchingPipeline`` (measured, tiny llama, greedy): ``add_request()`` ignores a
request's own adapters, and ``generate()`` applies one adapter set to everything it runs (the first request's);
that set then stays for requests added later. The engine is built with every adapter registered (weight 0,
dynamic mode) and the core runs one adapter group at a time: each ``generate()`` call of its pump sets the
group's adapter on the primer request, and only that group's requests are added while it runs.

Scheduling (``next_group``, ``must_switch``): when the engine is idle, the group of the oldest waiting request gets
it. While it runs, more requests of that group join; once another group has a request waiting and the current
group has had the engine for ``slice_s`` seconds, the core stops adding requests, lets the running ones finish and
hands the engine to the next group. A waiting request so gets the engine after at most (groups - 1) turns, each
``slice_s`` plus the time its running requests take to finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..convert.sources import IR_FILE
from ..errors import APIError, LoraError
from ..model.adapter_files import AdapterFile, base_layers, read_adapter

SLICE_S = 2.0  # seconds a group keeps the engine while another group waits (then its running requests finish)


def load_adapters(folder: Path, lora: Iterable[tuple[str, str]]) -> dict[str, AdapterFile]:
    """Each ``(name, adapter folder)`` read and checked against the export in ``folder`` (LoraError names the
    file and the problem: another base, NaN/Inf, rank or alpha against its config, not a LoRA)."""
    pairs = list(lora)
    if not pairs:
        return {}
    import openvino

    layers = base_layers(openvino.Core().read_model(str(Path(folder) / IR_FILE)))
    adapters = {}
    for name, path in pairs:
        adapter = Path(path).expanduser()
        if not adapter.is_dir():
            raise LoraError(f"LoRA adapter {name!r}: {path!r} is not a folder. Pass the folder PEFT's "
                            "save_pretrained wrote (adapter_config.json and adapter_model.safetensors).")
        try:
            adapters[name] = read_adapter(adapter, layers)
        except LoraError as exc:
            raise LoraError(f"LoRA adapter {name!r} cannot be served: {exc}") from None
    return adapters


def engine_adapters(adapters: Mapping[str, AdapterFile]) -> dict[str, Any]:
    """The engine's construction properties registering every adapter (weight 0, dynamic mode); {} for none."""
    import openvino_genai

    if not adapters:
        return {}
    mode = openvino_genai.AdapterConfig.Mode.MODE_DYNAMIC
    return {"adapters": openvino_genai.AdapterConfig([(a.genai, 0.0) for a in adapters.values()], mode)}


def group_config(adapters: Mapping[str, AdapterFile], group: str | None) -> Any:
    """The ``GenerationConfig.adapters`` that runs ``group`` (None: the base); None when no adapter is served."""
    import openvino_genai

    if not adapters:
        return None
    return openvino_genai.AdapterConfig([] if group is None else [(adapters[group].genai, 1.0)])


def check_name(adapters: Mapping[str, AdapterFile], name: str | None) -> None:
    """APIError(404) for an adapter the core does not serve."""
    if name is not None and name not in adapters:
        raise APIError(404, f"The adapter {name!r} is not served here; served adapters: "
                       f"{', '.join(map(repr, adapters)) or 'none'}.", param="model", code="model_not_found")


def next_group(waiting: Iterable[Any]) -> str | None:
    """The group to give the idle engine: the oldest waiting request's (requests wait in arrival order)."""
    for request in waiting:
        return request.adapter
    return None


def must_switch(current: str | None, waiting: Iterable[Any], held_s: float, slice_s: float) -> bool:
    """Whether the current group stops taking requests: another group waits and the slice is over."""
    return held_s >= slice_s and any(r.adapter != current and not r.cancelled for r in waiting)
