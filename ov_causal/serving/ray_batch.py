"""Batch generation on Ray Data: a callable class for ``Dataset.map_batches`` and a one-call helper.

Each Ray actor loads the model once (``Generator.__init__``) and then generates for every batch it
is given. A checkpoint is exported once per export cache: the first actor exports under the cache's
file lock, the others wait for it and load the finished entry (see ``ov_causal.convert.cache``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .._optional import require
from ..errors import OptionError

OUTPUT_COLUMNS = ("generated_text", "prompt_tokens", "generated_tokens")
_ROW = "__ov_causal_row__"  # input position of a row given as a list, removed before returning


def _ray_cpus() -> int | None:
    """CPUs Ray assigned to this actor (None outside Ray): OpenVINO would otherwise use every core."""
    if "ray" not in sys.modules:  # not inside Ray: never import it
        return None
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:  # the driver, not an actor
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return int(cpus) if cpus and cpus >= 1 else None


class Generator:
    """A callable class for ``ray.data.Dataset.map_batches``: loads the model once per actor.

    Args:
        model: Hub id, checkpoint folder or OpenVINO export folder (as for ``from_pretrained``).
        prompt_column: the column holding the prompts.
        max_new_tokens, do_sample: as in ``generate``.
        generate_kwargs: further ``generate`` keywords (``temperature``, ``stop_strings``, ...).
        model_kwargs: ``AutoModelForCausalLM.from_pretrained`` keywords (``preset``, ``runtime``, ...).
            Inside Ray, ``INFERENCE_NUM_THREADS`` defaults to the CPUs Ray gave the actor.
        lora: LoRA adapters served by name, ``{name: PEFT adapter folder}``, as ``serve(lora=...)``: a row runs
            with the adapter its ``adapter_column`` names (no value, '' or the base's name: the base), exactly as
            that adapter's fused export would. A folder or ``{folder: weight}`` instead is fused at export
            (``from_pretrained``'s ``lora=``). An adapter that does not fit the base raises LoraError here; a row
            naming an adapter not served raises LoraError for its batch, listing the served ones.
        adapter_column: the column naming each row's adapter (needed when ``lora`` serves adapters by name).

    ``__call__`` returns the batch with three more columns: ``generated_text``, ``prompt_tokens``
    and ``generated_tokens``; every other column (an id, metadata) is passed through.

    When the model is ready for GenAI (an export folder, or a checkpoint whose export is cached), only
    the keywords of ``model.plan.READY_KEYWORDS`` are in ``model_kwargs`` and every generate keyword maps to
    GenAI, the actor runs the torch-free serving core (``serving.batch_core``): a batch's prompts go in together,
    greedy rows equal the other path's. Otherwise, and where GenAI's batching crashes on one thread (see
    ``serving.engine.single_thread_crash``), the actor loads the model with ``AutoModelForCausalLM``.

    Example:
        >>> ds.map_batches(Generator, fn_constructor_kwargs={"model": "org/model"},
        ...                compute=ray.data.ActorPoolStrategy(size=2), batch_size=16)
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        prompt_column: str = "prompt",
        max_new_tokens: int = 64,
        do_sample: bool = False,
        generate_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        lora: Any = None,
        adapter_column: str = "adapter",
    ) -> None:
        from .batch_adapters import base_names, check_folders, split_lora
        from .batch_core import core_batch

        self.served, options = split_lora(lora, model_kwargs or {})
        check_folders(self.served)
        cpus = _ray_cpus()
        self.prompt_column, self.adapter_column, self.base = prompt_column, adapter_column, base_names(model)
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **(generate_kwargs or {})}
        # a ready folder runs on the torch-free serving core; anything else loads through AutoModelForCausalLM
        self.core = core_batch(model, options, self.generate_kwargs, cpus, self.served)
        if self.core is None:
            self._load(model, options, cpus)

    def _load(self, model: str | os.PathLike[str], options: dict[str, Any], cpus: int | None) -> None:
        """The loaded-model path: ``AutoModelForCausalLM`` with the served adapters loaded by name."""
        from ..model.modeling import AutoModelForCausalLM
        from .batch_adapters import load_on_model

        if cpus is not None and "INFERENCE_NUM_THREADS" not in (options.get("ov_config") or {}):
            options["ov_config"] = {**(options.get("ov_config") or {}), "INFERENCE_NUM_THREADS": cpus}
        self.model = AutoModelForCausalLM.from_pretrained(model, **options)
        if self.model.tokenizer is None:
            raise OptionError(f"{os.fspath(model)!r} has no tokenizer beside the model; batch generation needs one.")
        self.tokenizer = self.model.tokenizer
        load_on_model(self.model, self.served)

    def generate_one(self, prompt: str) -> tuple[str, int, int]:
        """(generated text, prompt tokens, generated tokens) for one prompt."""
        return self.generate_many([prompt])[0]

    def generate_many(self, prompts: Sequence[str],
                      adapters: Sequence[str | None] | None = None) -> list[tuple[str, int, int]]:
        """(generated text, prompt tokens, generated tokens) per prompt, from one generate() call per adapter.

        The prompts go as one left-padded batch, which the GenAI engine runs by continuous batching
        (each prompt on its own, so greedy output equals one prompt at a time). ``adapters``: each prompt's
        served adapter (None: the base).
        """
        if self.core is not None:
            return self.core.generate_many(prompts, adapters)
        if adapters is None or not self.served:
            return self._generate(prompts)
        from .batch_adapters import by_group, use_adapter

        def generate(group: Sequence[str], adapter: str | None) -> list[tuple[str, int, int]]:
            use_adapter(self.model, adapter)
            return self._generate(group)

        return by_group(prompts, adapters, generate)

    def _generate(self, prompts: Sequence[str]) -> list[tuple[str, int, int]]:
        from ..model.text import eos_ids, left_padded, new_tokens

        inputs, pad = left_padded(self.tokenizer, prompts)
        width = inputs["input_ids"].shape[1]
        output = self.model.generate(**inputs, pad_token_id=pad, **self.generate_kwargs)
        eos = eos_ids(self.model.generation_config.eos_token_id)
        results = []
        for row, length in enumerate(inputs["attention_mask"].sum(dim=1).tolist()):
            new = new_tokens(output[row, width:].tolist(), eos, pad)
            results.append((self.tokenizer.decode(new, skip_special_tokens=True), int(length), len(new)))
        return results

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Generate for ``batch[prompt_column]`` (a numpy batch: column name -> array)."""
        import numpy as np

        if self.prompt_column not in batch:
            raise OptionError(
                f"the batch has no column {self.prompt_column!r} (columns: {', '.join(batch)}). "
                "Pass prompt_column= naming the column that holds the prompts."
            )
        results = self.generate_many([str(prompt) for prompt in batch[self.prompt_column]], self._adapters(batch))
        out = dict(batch)
        out["generated_text"] = np.array([r[0] for r in results], dtype=object)
        out["prompt_tokens"] = np.array([r[1] for r in results], dtype=np.int64)
        out["generated_tokens"] = np.array([r[2] for r in results], dtype=np.int64)
        return out

    def _adapters(self, batch: Mapping[str, Any]) -> list[str | None] | None:
        """Each row's adapter from ``adapter_column`` (None without served adapters and without the column)."""
        from .batch_adapters import row_adapters

        if self.adapter_column not in batch:
            if self.served:
                raise OptionError(
                    f"the batch has no column {self.adapter_column!r} (columns: {', '.join(batch)}), and lora= serves "
                    f"adapters by name ({', '.join(name for name, _ in self.served)}). Add the column (empty: the "
                    "base), or pass adapter_column= naming the column that holds each row's adapter."
                )
            return None
        return row_adapters(batch[self.adapter_column], [name for name, _ in self.served], self.base)


def _rows(data: Sequence[Any], prompt_column: str) -> list[dict[str, Any]]:
    """A list of prompts or of row dicts -> row dicts numbered by position."""
    rows = []
    for position, item in enumerate(data):
        if isinstance(item, str):
            row = {prompt_column: item}
        elif isinstance(item, Mapping) and prompt_column in item:
            row = dict(item)
        else:
            raise OptionError(
                f"item {position} of the data is {type(item).__name__} {item!r:.80}: pass strings (prompts) or "
                f"dicts with a {prompt_column!r} key."
            )
        rows.append({**row, _ROW: position})
    return rows


def _check_local_model(model: str | os.PathLike[str]) -> None:
    """Fail at once, not in every actor, for a local path that is missing or holds no model (Hub ids pass)."""
    from pathlib import Path

    from ..config.hub import HubOptions
    from ..convert.sources import looks_like_path, resolve_source

    name = os.fspath(model)
    if Path(name).expanduser().exists() or looks_like_path(name):
        resolve_source(name, HubOptions())


def generate_batch(
    data: Any,
    model: str | os.PathLike[str],
    *,
    prompt_column: str = "prompt",
    max_new_tokens: int = 64,
    do_sample: bool = False,
    generate_kwargs: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    concurrency: int = 1,
    num_cpus: float = 1,
    batch_size: int = 16,
    max_restarts: int = 4,
    lora: Any = None,
    adapter_column: str = "adapter",
) -> Any:
    """Generate for every prompt of ``data`` on Ray Data (a local cluster is started if none is running).

    Args:
        data: a ``ray.data.Dataset`` with a ``prompt_column``, or a list of prompts or of row dicts.
        model: Hub id, checkpoint folder or OpenVINO export folder; every actor loads it once.
        prompt_column, max_new_tokens, do_sample, generate_kwargs, model_kwargs: see ``Generator``.
        concurrency: how many actors (model copies) run at once.
        num_cpus: CPUs reserved per actor (OpenVINO runs that many threads).
        batch_size: rows per ``Generator`` call; a retried batch is redone as a whole.
        max_restarts: how often Ray restarts an actor whose process dies (its batch is retried).
        lora, adapter_column: LoRA adapters served by name and the column picking each row's (see ``Generator``).
            Adapters are checked before the job when the model is ready (an export folder or a cached export),
            and a list's rows are checked for unknown adapter names.

    Returns:
        For a list: the rows in input order, each with ``generated_text``, ``prompt_tokens`` and
        ``generated_tokens`` added. For a Dataset: the lazy Dataset with those columns (write it with
        ``write_parquet`` & co., or ``take_all()``), in no guaranteed order.

    Example:
        >>> rows = generate_batch(["def add(a, b):"] * 1000, "org/model", concurrency=2, max_new_tokens=16)
    """
    _check_local_model(model)
    ray_data = require("ray.data", "ray")
    if isinstance(data, (str, bytes)) or not isinstance(data, (Sequence, ray_data.Dataset)):
        raise OptionError(
            f"data is {type(data).__name__}: pass a ray.data.Dataset, or a list of prompts or of row dicts."
        )
    if concurrency < 1 or batch_size < 1:
        raise OptionError(f"concurrency={concurrency} and batch_size={batch_size} must both be at least 1.")
    served = _check_lora(model, lora, model_kwargs)
    if isinstance(data, ray_data.Dataset):
        dataset = data
    else:
        rows = _rows(data, prompt_column)
        if served:
            _check_row_adapters(model, rows, served, adapter_column)
        dataset = ray_data.from_items(rows)
    constructor = dict(model=model, prompt_column=prompt_column, max_new_tokens=max_new_tokens, do_sample=do_sample,
                       generate_kwargs=generate_kwargs, model_kwargs=model_kwargs, lora=lora,
                       adapter_column=adapter_column)
    result = dataset.map_batches(
        Generator,
        fn_constructor_kwargs=constructor,
        compute=ray_data.ActorPoolStrategy(size=concurrency),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        # actor options (Ray deprecates passing them as keywords): a batch whose actor died is retried
        ray_remote_args_fn=functools.partial(dict, max_restarts=max_restarts, max_task_retries=-1),
    )
    if isinstance(data, ray_data.Dataset):
        return result
    rows = sorted(result.take_all(), key=lambda r: r[_ROW])
    return [{k: _plain(v) for k, v in row.items() if k != _ROW} for row in rows]


def _check_lora(model: str | os.PathLike[str], lora: Any,
                model_kwargs: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """The adapters served by name, checked before any actor starts (against the export when it is ready)."""
    from .batch_adapters import check_on_ready_folder, split_lora

    served, options = split_lora(lora, model_kwargs or {})
    check_on_ready_folder(model, options, served)
    return served


def _check_row_adapters(model: str | os.PathLike[str], rows: list[dict[str, Any]],
                        served: Sequence[tuple[str, str]], column: str) -> None:
    """Every row names a served adapter or the base (LoraError listing the served ones); a missing value: None."""
    from .batch_adapters import base_names, row_adapters

    for row in rows:
        row.setdefault(column, None)  # one schema for every row: Ray Data needs the column in each
    row_adapters((row[column] for row in rows), [name for name, _ in served], base_names(model))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python ones, so the rows compare and serialize like the input."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
