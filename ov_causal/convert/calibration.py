"""Text for evaluation and calibration: a file, a string or a list of strings, cut into token windows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import OptionError

TextSource = str | os.PathLike | Sequence[str]
CALIBRATION_WINDOW = 128
MIN_CALIBRATION_WINDOWS = 4


def load_texts(text: TextSource | None, what: str = "text") -> list[str]:
    """Return the texts: a ``Path`` (or a string naming an existing file) is read, a string is one text."""
    if text is None:
        raise OptionError(f"{what}= is needed: pass a file path, a string, or a list of strings.")
    if isinstance(text, os.PathLike) or (isinstance(text, str) and "\n" not in text and len(text) < 4096
                                          and Path(text).is_file()):
        path = Path(text)
        if not path.is_file():
            raise OptionError(f"{what} file {str(path)!r} does not exist.")
        texts = [path.read_text(encoding="utf-8", errors="replace")]
    elif isinstance(text, str):
        texts = [text]
    elif isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        texts = list(text)
    else:
        raise OptionError(f"{what}={text!r} is not valid: pass a file path, a string, or a list of strings.")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise OptionError(f"{what} is empty: pass some text (a file, a string or a list of strings).")
    return texts


def token_stream(texts: list[str], tokenizer: Any) -> list[int]:
    """All texts tokenized and joined, separated by the end-of-text token when there is one.

    The stream is cut into windows afterwards, so transformers' "longer than the specified maximum sequence
    length" warning does not apply (``verbose=False``)."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
    return ids


def calibration_windows(texts: list[str], tokenizer: Any, max_windows: int = 128) -> list[list[int]]:
    """Non-overlapping windows of CALIBRATION_WINDOW tokens; too little text is an error."""
    ids = token_stream(texts, tokenizer)
    windows = [ids[i : i + CALIBRATION_WINDOW] for i in range(0, len(ids) - CALIBRATION_WINDOW + 1, CALIBRATION_WINDOW)]
    if len(windows) < MIN_CALIBRATION_WINDOWS:
        raise OptionError(
            f"the calibration text has {len(ids)} tokens; data-aware compression needs at least "
            f"{MIN_CALIBRATION_WINDOWS * CALIBRATION_WINDOW} ({MIN_CALIBRATION_WINDOWS} windows of "
            f"{CALIBRATION_WINDOW}). Pass more text (a few pages of the kind of text the model will see)."
        )
    return windows[:max_windows]


def calibration_dataset(model: Any, windows: list[list[int]]) -> Any:
    """An ``nncf.Dataset`` of prefill inputs for an OpenVINO LLM (state is reset between samples)."""
    import nncf
    import numpy as np

    names = {inp.get_any_name() for inp in model.inputs}

    def sample(window: list[int]) -> dict[str, Any]:
        ids = np.array([window], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "position_ids" in names:
            inputs["position_ids"] = np.arange(ids.shape[1], dtype=np.int64)[None]
        if "beam_idx" in names:
            inputs["beam_idx"] = np.zeros((1,), dtype=np.int32)
        return inputs

    return nncf.Dataset([sample(w) for w in windows])
