"""Ray Data batch generation through the serving core: a ready folder, GenAI and its tokenizers, no torch.

``batch.Generator`` uses this when the model is ready (an export folder, or a checkpoint whose export is in
the cache) and every keyword maps to GenAI; a batch's prompts are submitted together and run by continuous
batching, so greedy output equals one prompt at a time (and the ``AutoModelForCausalLM`` path).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from .adapters import load_adapters
from .engine import single_thread_crash
from .scheduler import ServingCore

_MAX_QUEUE = 1 << 20  # a batch is submitted whole: its prompts wait in the core, never refused


class CoreBatch:
    """Generates a batch's prompts on one ``ServingCore``, with transformers' generate keywords."""

    def __init__(self, core: ServingCore, defaults: SimpleNamespace, generate_kwargs: Mapping[str, Any]) -> None:
        self.core, self.settings = core, SimpleNamespace(**{**vars(defaults), **generate_kwargs})

    def generate_many(self, prompts: Sequence[str],
                      adapters: Sequence[str | None] | None = None) -> list[tuple[str, int, int]]:
        """(generated text, prompt tokens, generated tokens) per prompt, all prompts in one running batch.

        ``adapters``: each prompt's served adapter (None: the base); the core runs them group by group.
        """
        encoded = [self.core.encode(prompt) for prompt in prompts]
        names = list(adapters) if adapters is not None else [None] * len(encoded)
        requests = [self.core.submit(ids, self._config(len(ids)), adapter=name) for ids, name in zip(encoded, names)]
        results = [request.result()[0].tokens for request in requests]
        return [(self.core.decode(tokens), len(ids), len(tokens)) for ids, tokens in zip(encoded, results)]

    def _config(self, prompt_length: int) -> Any:
        from ..config.sampling import rng_seed
        from ..model.backends import genai_config

        return genai_config(self.settings, prompt_length, {}, rng_seed=rng_seed() if self.settings.do_sample else None)

    def close(self) -> None:
        self.core.close()


def core_batch(model: str | os.PathLike[str], model_kwargs: Mapping[str, Any],
               generate_kwargs: Mapping[str, Any], threads: int | None,
               lora: Sequence[tuple[str, str]] = ()) -> CoreBatch | None:
    """A ``CoreBatch`` for ``model`` when its folder is ready and every keyword maps to GenAI, else None.

    ``threads``: the CPUs Ray gave the actor (``INFERENCE_NUM_THREADS`` unless ``ov_config`` sets it).
    ``lora``: ``(name, adapter folder)`` pairs served by name (read and checked here: LoraError).
    """
    from ..model.backends import MAPPED
    from ..model.plan import plan_load
    from ..model.ready import generation_defaults

    if set(generate_kwargs) - MAPPED:
        return None
    if (generate_kwargs.get("num_return_sequences") or 1) > 1:  # a row per prompt: the loaded path decides
        return None
    plan = plan_load(model, **model_kwargs)
    defaults = None if plan.folder is None else generation_defaults(plan.folder)
    if plan.folder is None or defaults is None:
        return None
    properties = dict(plan.properties)
    if threads is not None and "INFERENCE_NUM_THREADS" not in (model_kwargs.get("ov_config") or {}):
        properties["INFERENCE_NUM_THREADS"] = str(threads)
    if single_thread_crash(plan.folder, properties):  # GenAI's continuous batching would crash: the loaded path
        return None
    adapters = load_adapters(plan.folder, lora)
    # a batch needs every row, not fairness: each adapter group keeps the engine until its rows are done
    core = ServingCore(plan.folder, device=plan.device, properties=properties, max_queue=_MAX_QUEUE,
                       adapters=adapters, adapter_slice=float("inf"))
    return CoreBatch(core, defaults, generate_kwargs)
