"""``ov-causal generate``: load a model (the shipped demo model by default) and generate text."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

DEMO_MODEL = Path(__file__).parent / "demo_model"
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
        preset, runtime, device: as in ``AutoModelForCausalLM.from_pretrained``.
        max_new_tokens: how many tokens to generate at most.
        do_sample: sample instead of greedy decoding (seeded by ``seed``).
    """
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
