"""The workload classes ``bench --against llama.cpp`` times, and the small sums it reports (medians, ratios).

Each class is a way users spend a model's time: a long prompt with a short answer (RAG, classification), a
chat turn on a growing history (prefix reuse), a long generation, a list of prompts, and concurrent users of a
server. Prompts are random token ids (the same ids for every engine, fresh each run, never a prefix of an
earlier one) so that both engines read exactly the same input; generation is greedy with a fixed count of new
tokens (``ignore_eos``), so both write the same number. Nothing here imports an engine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError, suggest


@dataclass(frozen=True)
class Workload:
    """One workload class: what one timed answer is.

    ``prompt_tokens`` is the prompt of one call (for ``chat``, the first turn: system prompt and first
    message); ``turn_tokens`` the user message each later chat turn adds; ``prompts`` how many prompts one
    answer holds (a list, or concurrent users).
    """

    name: str
    title: str
    prompt_tokens: int
    new_tokens: int
    prompts: int = 1
    turns: int = 1
    turn_tokens: int = 0

    def describe(self) -> str:
        if self.name == "chat":
            return (f"{self.prompt_tokens}-token first turn, +{self.turn_tokens}-token message per turn, "
                    f"{self.new_tokens} new tokens; turns 2-{self.turns}")
        many = f"{self.prompts} x " if self.prompts > 1 else ""
        return f"{many}{self.prompt_tokens}-token prompt, {self.new_tokens} new tokens"

    def context_tokens(self) -> int:
        """The longest sequence one call of this workload holds (prompt, history and answer)."""
        return self.prompt_tokens + (self.turns - 1) * (self.turn_tokens + self.new_tokens) + self.new_tokens


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("long-prompt", "long prompt, short answer", prompt_tokens=1024, new_tokens=16),
    Workload("chat", "chat turn on a growing history", prompt_tokens=256, new_tokens=32, turns=4, turn_tokens=64),
    Workload("long-generation", "long generation", prompt_tokens=32, new_tokens=256),
    Workload("list", "a list of 16 prompts", prompt_tokens=128, new_tokens=32, prompts=16),
    Workload("users", "concurrent users (servers)", prompt_tokens=128, new_tokens=64, prompts=4),
)}


def get_workloads(names: Sequence[str], users: int = 4) -> list[Workload]:
    """The named workloads, in the order given; ``users`` sets how many clients the ``users`` class has."""
    names = [n.replace("_", "-") for n in names]  # long_prompt as well as tune's long-prompt
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        hint = suggest(unknown[0], WORKLOADS) if unknown else ""
        raise OptionError(f"unknown workload(s) {', '.join(map(repr, unknown)) or '(none given)'}: use a subset of "
                          f"{', '.join(WORKLOADS)}.{hint}")
    if users < 1:
        raise OptionError(f"users={users}: pass at least 1 concurrent user.")
    return [WORKLOADS[n] if n != "users" else _with_users(WORKLOADS[n], users) for n in dict.fromkeys(names)]


def _with_users(workload: Workload, users: int) -> Workload:
    from dataclasses import replace

    return replace(workload, prompts=users, title=f"{users} concurrent users (servers)")


class TokenPrompts:
    """Random token ids in ``[low, vocab)``, from one seeded generator: every call gives new ids."""

    def __init__(self, vocab: int, seed: int = 0, low: int = 3) -> None:
        import numpy as np

        if vocab <= low + 1:
            raise OptionError(f"a vocabulary of {vocab} tokens is too small to draw prompts from.")
        self.rng = np.random.default_rng(seed)
        self.vocab, self.low = vocab, low

    def ids(self, length: int) -> list[int]:
        return [int(t) for t in self.rng.integers(self.low, self.vocab, length)]

    def many(self, count: int, length: int) -> list[list[int]]:
        return [self.ids(length) for _ in range(count)]


def chat_messages(workload: Workload, prompts: TokenPrompts) -> list[list[int]]:
    """A conversation's inputs: the first turn's prompt, then one user message per later turn."""
    return [prompts.ids(workload.prompt_tokens)] + [prompts.ids(workload.turn_tokens)
                                                    for _ in range(workload.turns - 1)]


def run_chat(generate: Callable[[list[int], int], list[int]], messages: Sequence[list[int]], new_tokens: int,
             clock: Callable[[], float]) -> list[float]:
    """Play a conversation through ``generate(ids, new_tokens) -> new ids``: each turn's prompt is the whole
    history (earlier prompts and the engine's own answers) plus the new message. Returns the seconds of each
    turn after the first (the turns that can reuse the history's cache)."""
    history: list[int] = []
    times = []
    for message in messages:
        prompt = history + list(message)
        start = clock()
        answer = generate(prompt, new_tokens)
        times.append(clock() - start)
        history = prompt + list(answer)
    return times[1:]


def rotations(names: Sequence[str], runs: int) -> list[list[str]]:
    """The engines' order in each run: rotated by one each run, so that each engine goes first equally often
    and none always runs right after the same other one when there are two."""
    names = list(names)
    return [names[i % len(names):] + names[: i % len(names)] for i in range(runs)] if names else []


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def speedup(reference_s: float | None, ours_s: float | None) -> float | None:
    """How many times faster ``ours`` answers than the reference (> 1: ours is faster); None if either is missing."""
    if not reference_s or not ours_s:
        return None
    return reference_s / ours_s


def achieved_gb_s(weight_bytes: int, tokens_per_s: float) -> float:
    """Bytes read per second if every generated token reads every weight once (the decode's memory traffic)."""
    return weight_bytes * tokens_per_s / 1e9


def one_of(value: Any, allowed: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``allowed`` (case-insensitive), else an OptionError listing them."""
    text = str(value).lower()
    if text not in allowed:
        raise OptionError(f"{what} {value!r} is not supported: use one of {', '.join(allowed)}.")
    return text
