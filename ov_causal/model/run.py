"""``ov-causal generate``: load a model (the shipped demo model by default) and generate text."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..convert.cache import genai_properties
from ..convert.sources import DEMO_MODEL
from ..errors import OptionError

if TYPE_CHECKING:
    from .plan import LoadPlan

DEMO_PROMPT = 'def read_config(path):\n    """Read a configuration file."""\n    with open(path'


@dataclass(frozen=True)
class Generation:
    """One generation: the text, its prompt, and how fast it came."""

    prompt: str
    text: str
    new_tokens: int
    seconds: float
    load_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("inf")


def generate(
    prompt: str = DEMO_PROMPT,
    model: str | None = None,
    preset: str | None = None,
    runtime: str | None = None,
    device: str = "CPU",
    max_new_tokens: int = 64,
    do_sample: bool = False,
    seed: int = 0,
) -> Generation:
    """Generate a continuation of ``prompt``.

    Args:
        prompt: the text to continue.
        model: Hub id, checkpoint or export folder; None uses the demo model shipped with the package
            (a small Llama trained on Python's standard library source by ``scripts/train_demo_model.py``).
        preset: as in ``AutoModelForCausalLM.from_pretrained``.
        runtime: as in ``AutoModelForCausalLM.from_pretrained``.
        device: as in ``AutoModelForCausalLM.from_pretrained``.
        max_new_tokens: how many tokens to generate at most.
        do_sample: sample instead of greedy decoding (seeded by ``seed``).

    A model GenAI can run as it is (an export folder, or a checkpoint already in the export cache)
    is loaded by ``openvino_genai.LLMPipeline`` alone, without importing torch or transformers; the
    output is the same as through ``AutoModelForCausalLM``.
    """
    from .plan import plan_load
    from .ready import generation_defaults

    plan = plan_load(model or DEMO_MODEL, preset=preset, runtime=runtime, device=device)
    defaults = None if plan.folder is None else generation_defaults(plan.folder)
    if plan.folder is not None and defaults is not None:
        return _generate_ready(plan, defaults, prompt, max_new_tokens, do_sample, seed)
    return _generate_loaded(prompt, model, preset, runtime, device, max_new_tokens, do_sample, seed)


def _generate_ready(
    ready: LoadPlan, defaults: Any, prompt: str, max_new_tokens: int, do_sample: bool, seed: int
) -> Generation:
    """``generate`` on a ready folder: GenAI's pipeline and tokenizers only."""
    import openvino_genai

    from ..config.sampling import rng_seed
    from .backends import genai_config

    start = time.perf_counter()
    # genai_properties: without the entry's CACHE_DIR on CPU, whose paged-attention blob OpenVINO writes on every
    # load and never reads back (~2 s per start on a 246M int8 model; see convert.cache.genai_properties).
    pipe = openvino_genai.LLMPipeline(str(ready.folder), ready.device, **genai_properties(ready.properties,
                                                                                         ready.device))
    tokenizer = pipe.get_tokenizer()
    inputs = tokenizer.encode(prompt)
    prompt_length = inputs.input_ids.get_shape()[1]
    pipe.generate(inputs, genai_config(_settings(defaults, max_new_tokens=1), prompt_length, {}))
    load_seconds = time.perf_counter() - start
    config = genai_config(_settings(defaults, max_new_tokens=max_new_tokens, do_sample=do_sample, min_new_tokens=1),
                          prompt_length, {}, rng_seed=rng_seed(seed, follow_torch=True) if do_sample else None)
    start = time.perf_counter()
    new = list(pipe.generate(inputs, config).tokens[0])
    seconds = time.perf_counter() - start
    return Generation(prompt, tokenizer.decode(new, skip_special_tokens=True), len(new), seconds, load_seconds)


def _settings(defaults: Any, **changes: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(**{**vars(defaults), **changes})


def _generate_loaded(
    prompt: str, model: str | None, preset: str | None, runtime: str | None, device: str, max_new_tokens: int,
    do_sample: bool, seed: int,
) -> Generation:
    """``generate`` through ``AutoModelForCausalLM`` (exports, compresses or converts what is needed)."""
    import torch

    from .modeling import AutoModelForCausalLM

    start = time.perf_counter()
    ov_model = AutoModelForCausalLM.from_pretrained(
        model or DEMO_MODEL, preset=preset, runtime=runtime, device=device
    )
    tokenizer = ov_model.tokenizer
    inputs = tokenizer(prompt, return_tensors="pt")
    ov_model.generate(**inputs, max_new_tokens=1)  # builds the generation engine: part of getting ready
    load_seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    start = time.perf_counter()
    output = ov_model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, min_new_tokens=1)
    seconds = time.perf_counter() - start
    new = output[0, inputs["input_ids"].shape[1] :]
    return Generation(prompt, tokenizer.decode(new, skip_special_tokens=True), len(new), seconds, load_seconds)


def stream(model: Any, prompt: str, *, file: TextIO | None = None, **generate_kwargs: Any) -> str:
    """Print the continuation of ``prompt`` as it is generated (into the cell, in Jupyter) and return it.

    Args:
        model: an ov_causal model (with its tokenizer) or a ``pipeline("text-generation", ...)``.
        prompt: the text to continue.
        file: where to print (default: standard output).
        **generate_kwargs: ``generate`` keywords (``max_new_tokens``, ``do_sample``, ...).

    Example:
        >>> text = ov_causal.stream(model, "def read_config(path):", max_new_tokens=40)
    """
    from transformers import TextStreamer

    tokenizer = getattr(model, "tokenizer", None)
    model = getattr(model, "model", model) if not hasattr(model, "ov_manifest") else model
    if tokenizer is None or not hasattr(model, "generate"):
        raise OptionError(
            "stream() needs an ov_causal model loaded with its tokenizer, or a text-generation pipeline; "
            "load the model with load_tokenizer=True (the default) from a folder that has a tokenizer."
        )
    pieces: list[str] = []
    out = file

    class _Printer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            pieces.append(text)
            print(text, end="" if not stream_end else "\n", flush=True, file=out)

    inputs = tokenizer(prompt, return_tensors="pt")
    generate_kwargs.setdefault("max_new_tokens", 64)
    model.generate(**inputs, streamer=_Printer(tokenizer, skip_prompt=True, skip_special_tokens=True),
                   **generate_kwargs)
    return "".join(pieces)
