"""Token rows in and out of ``generate()``: prompts left-padded without touching the tokenizer, new tokens cut
at their end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def left_padded(tokenizer: Any, prompts: Sequence[str]) -> tuple[dict[str, Any], int]:
    """``input_ids`` and ``attention_mask`` of ``prompts`` left-padded to the longest, and the pad id used.

    The shared tokenizer is left as it is (its ``padding_side`` and ``pad_token`` are the user's): a
    tokenizer without a pad token pads with its end-of-sequence token.
    """
    import torch

    rows = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(row) for row in rows)
    ids = [[pad] * (width - len(row)) + list(row) for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    inputs = {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}
    return inputs, pad


def eos_ids(eos: int | Iterable[int] | None) -> set[int]:
    """A generation config's ``eos_token_id`` (one id, several, or None) as a set."""
    return {eos} if isinstance(eos, int) else set(eos or ())


def new_tokens(row: Sequence[int], eos: set[int], pad: int | None) -> list[int]:
    """The tokens a row generated: up to and including its end-of-sequence token; a row that ended otherwise (a
    stop string, max tokens) loses the padding ``generate()`` added to reach the batch's longest row."""
    tokens = list(row)
    ended = next((i for i, t in enumerate(tokens) if t in eos), None)
    if ended is not None:
        return tokens[: ended + 1]
    while tokens and pad is not None and tokens[-1] == pad and pad not in eos:
        tokens.pop()
    return tokens
