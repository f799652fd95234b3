"""model/text.py: prompts left-padded without touching the shared tokenizer; new tokens cut at their end."""

from __future__ import annotations

from transformers import AutoTokenizer

from ov_causal.convert.sources import DEMO_MODEL
from ov_causal.model.text import eos_ids, left_padded, new_tokens


def test_left_padded_leaves_the_tokenizer_as_the_user_set_it():
    tokenizer = AutoTokenizer.from_pretrained(DEMO_MODEL)
    tokenizer.padding_side = "right"
    pad_before = tokenizer.pad_token
    inputs, pad = left_padded(tokenizer, ["def f(x):", "import os\nimport sys\n"])
    assert tokenizer.padding_side == "right" and tokenizer.pad_token == pad_before
    assert pad == (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    short, long = (tokenizer(p)["input_ids"] for p in ["def f(x):", "import os\nimport sys\n"])
    width = max(len(short), len(long))
    assert inputs["input_ids"].shape == (2, width)
    assert inputs["input_ids"][0].tolist() == [pad] * (width - len(short)) + short
    assert inputs["attention_mask"][0].tolist() == [0] * (width - len(short)) + [1] * len(short)
    assert inputs["input_ids"][1].tolist() == long


def test_new_tokens_end_at_eos_or_lose_the_batch_padding():
    assert eos_ids(2) == {2} and eos_ids([2, 3]) == {2, 3} and eos_ids(None) == set()
    assert new_tokens([5, 6, 2, 0, 0], {2}, 0) == [5, 6, 2]  # ended by eos: kept, the rest is padding
    assert new_tokens([5, 6, 0, 0], {2}, 0) == [5, 6]  # a stop string ended it: padding is not generated
    assert new_tokens([5, 6, 7], {2}, 0) == [5, 6, 7]
    assert new_tokens([5, 2, 2], {2}, 2) == [5, 2]  # pad is eos: cut at the first eos
