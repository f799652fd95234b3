"""LoRA adapters served by name in Ray Data batch jobs: each row picks its adapter through a column.

``Generator(model, lora={name: folder})`` serves the adapters the way ``serve(lora=...)`` does (``options.served_lora``
tells them from a folder or ``{folder: weight}``, which is fused at export). A row's ``adapter_column`` value picks
its adapter; no value (missing, None, NaN, '') or the base's name (``launch.default_name(model)``, the id ``serve``
lists the base under) runs the base. On the serving core each adapter is a request group (``serving.adapters``);
on a loaded model the rows are generated group by group through ``set_adapter`` / ``disable_adapters``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import LoraError, OptionError, suggest
from .launch import default_name
from .options import check_lora, served_lora

T = TypeVar("T")


def split_lora(lora: object, model_kwargs: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], dict[str, Any]]:
    """``lora=`` -> (adapters served by name, ``model_kwargs`` with a fused ``lora`` added)."""
    served, fused = served_lora(lora)
    options = dict(model_kwargs)
    if fused is not None:
        if options.get("lora") is not None:
            raise OptionError("lora= is given twice (as Generator's lora= and in model_kwargs): pass it once.")
        options["lora"] = fused
    check_lora(served, None)
    return served, options


def base_names(model: str | os.PathLike[str]) -> frozenset[str]:
    """The values of the adapter column that mean the base: '' and the base's model id (as ``serve`` names it)."""
    return frozenset({"", default_name(model), os.fspath(model)})


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_adapters(values: Iterable[Any], served: Iterable[str], base: frozenset[str]) -> list[str | None]:
    """The adapter of each row (None: the base); LoraError for a name that is not served, naming those that are."""
    names = list(served)
    picked: list[str | None] = []
    for value in values:
        name = None if _is_empty(value) else str(value)
        if name is not None and name in base:
            name = None
        if name is not None and name not in names:
            raise LoraError(f"a row asks for adapter {name!r}, which this job does not serve.{suggest(name, names)} "
                            f"Served adapters: {', '.join(map(repr, names)) or 'none (pass lora={name: folder})'}; "
                            "an empty value or the base's name runs the base.")
        picked.append(name)
    return picked


def check_folders(served: Sequence[tuple[str, str]]) -> None:
    """Before the job: every served adapter is a folder holding a PEFT adapter config."""
    for name, path in served:
        folder = Path(path).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise LoraError(f"LoRA adapter {name!r}: {path!r} is not an adapter folder (no adapter_config.json). "
                            "Pass the folder PEFT's save_pretrained wrote.")


def check_on_ready_folder(model: str | os.PathLike[str], model_kwargs: Mapping[str, Any],
                          served: Sequence[tuple[str, str]]) -> None:
    """Before the job, when the model is ready: each adapter read and checked against the export (shapes, NaN, ...)."""
    from ..model.plan import plan_load
    from .adapters import load_adapters

    if not served:
        return
    check_folders(served)
    plan = plan_load(model, **model_kwargs)
    if plan.folder is not None:
        load_adapters(plan.folder, served)


def load_on_model(model: Any, served: Sequence[tuple[str, str]]) -> None:
    """The loaded-model path: each served adapter loaded under its name (LoraError names the bad one)."""
    for name, path in served:
        model.load_adapter(path, adapter_name=name)


def use_adapter(model: Any, name: str | None) -> None:
    """Make ``name`` the one adapter ``generate`` applies (None: the base)."""
    if name is None:
        model.disable_adapters()
        return
    model.set_adapter(name)
    model.enable_adapters()


def by_group(prompts: Sequence[str], adapters: Sequence[str | None],
             generate: Callable[[Sequence[str], str | None], list[T]]) -> list[T]:
    """``generate(prompts of one adapter, adapter)`` once per adapter, the results back in row order."""
    results: list[T | None] = [None] * len(prompts)
    for group in dict.fromkeys(adapters):
        rows = [i for i, name in enumerate(adapters) if name == group]
        for row, result in zip(rows, generate([prompts[i] for i in rows], group)):
            results[row] = result
    return results  # type: ignore[return-value]  # every row is in exactly one group
