"""Workload classes for ``tune``: how long a user waits for an answer, from prefill and decode speed.

A preset that decodes faster may prefill slower (per-channel int4 against int8, say); which one answers
sooner depends on the prompt and answer lengths. ``tune(..., workload=...)`` measures both speeds per
candidate and ranks them by the estimated time to answer of the workload
(prompt tokens / prefill tok/s + new tokens / decode tok/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import OptionError, suggest

PREFILL_PROBE_TOKENS = 256  # prompt length the prefill speed is measured at (short enough for small models)


@dataclass(frozen=True)
class Workload:
    """Prompt tokens the engine prefills and tokens it generates per answer."""

    name: str
    prompt_tokens: int
    new_tokens: int
    description: str

    def time_to_answer(self, prefill_tok_s: float, decode_tok_s: float) -> float:
        """Seconds from request to the last token (nan when a speed is unknown)."""
        if not (prefill_tok_s > 0 and decode_tok_s > 0):
            return math.nan
        return self.prompt_tokens / prefill_tok_s + self.new_tokens / decode_tok_s


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("long-prompt", 1024, 16, "long prompt, short answer (RAG, classification)"),
        Workload("chat", 64, 128, "a chat turn: the history is reused, only the new message is prefilled"),
        Workload("long-generation", 32, 256, "short prompt, long answer (writing, code)"),
    )
}


def get_workload(name: str) -> Workload:
    """Look up a workload by name; an unknown name lists the valid ones."""
    if name not in WORKLOADS:
        raise OptionError(f"workload={name!r} is not valid.{suggest(name, WORKLOADS)} "
                          f"Use one of: {', '.join(WORKLOADS)}.")
    return WORKLOADS[name]
