"""Every token's log-probability under the served model: the folder's own IR on ``openvino.Core``, no torch.

GenAI's ``GenerationConfig.logprobs`` gives the chosen token's log-probability only; OpenAI's ``top_logprobs``
and prompt scoring (lm-eval's ``echo: true``) need the whole next-token distribution. ``Scorer`` compiles the
folder's ``openvino_model.xml`` (the stateful export GenAI also reads) with the server's properties, on first
use, and feeds a sequence through it in chunks: logits ``[chunk, vocabulary]`` -> ``log_softmax`` in numpy ->
the chosen token's log-probability and the ``k`` most likely tokens. Scores are the model's raw distribution
(before temperature, penalties or a response_format), as vLLM returns by default.

``TokenText`` gives each token's exact bytes, read from the detokenizer's vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.sources import DETOKENIZER_FILE, IR_FILE
from ..errors import APIError

CHUNK = 128  # tokens per inference: bounds the logits held at once (128 x vocabulary x 4 bytes)
_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}
_PLAIN_DETOKENIZER = {"Parameter", "Result", "Constant", "Convert", "VocabDecoder", "FuzeRagged", "UTF8Validate",
                      "StringTensorPack"}


@dataclass(frozen=True)
class TokenScore:
    """One token of a sequence: its log-probability after the tokens before it (None for the first token,
    which nothing predicts), and the ``k`` most likely tokens at its place, most likely first."""

    id: int
    logprob: float | None
    top: tuple[tuple[int, float], ...] = ()


def top_k(logits: Any, targets: Any, k: int) -> list[tuple[float, tuple[tuple[int, float], ...]]]:
    """log_softmax of each row of ``logits`` [n, vocabulary]: (log-probability of ``targets[i]``, the ``k``
    largest (id, log-probability) in descending order) per row."""
    import numpy as np

    rows = logits.astype(np.float32, copy=False)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    chosen = logp[np.arange(len(targets)), targets]
    if k == 0:
        return [(float(c), ()) for c in chosen]
    best = np.argpartition(-logp, k - 1, axis=-1)[:, :k]
    out = []
    for row, ids, value in zip(logp, best, chosen):
        order = ids[np.argsort(-row[ids], kind="stable")]
        out.append((float(value), tuple((int(i), float(row[i])) for i in order)))
    return out


def check_ids(ids: Sequence[int], size: int) -> None:
    """APIError(400) for a token id outside a vocabulary of ``size`` (the engine must never see one)."""
    bad = [t for t in ids if not 0 <= int(t) < size]
    if bad:
        raise APIError(400, f"Token id {bad[0]} is outside this model's vocabulary (0..{size - 1}).",
                       param="prompt", code="invalid_token_id")


def vocabulary(folder: Path) -> int:
    """The size of the IR's output vocabulary (read, not compiled)."""
    import openvino

    return int(openvino.Core().read_model(folder / IR_FILE).outputs[0].get_partial_shape()[-1].get_length())


class Scorer:
    """The IR of ``folder`` compiled for scoring (lazily: a model's first logprobs request pays ~1 s).

    Args:
        folder: the served export folder.
        device: OpenVINO device.
        properties: the server's OpenVINO properties (the same precision as the engine's).
    """

    def __init__(self, folder: Path, device: str, properties: dict[str, Any]) -> None:
        self.folder, self.device = folder, device
        self.properties = {k: v for k, v in properties.items() if k != "CACHE_DIR"}  # the entry's blob is GenAI's
        self._compiled: Any = None
        self._lock = threading.Lock()  # one inference at a time: scoring takes cores from the engine, not all
        self.vocabulary = 0

    def _model(self) -> Any:
        with self._lock:
            if self._compiled is None:
                import openvino

                core = openvino.Core()
                model = core.read_model(self.folder / IR_FILE)
                names = {i.get_any_name() for i in model.inputs}
                if not names >= {"input_ids", "attention_mask"} or names - _INPUTS:
                    raise APIError(400, f"logprobs need a stateful export (inputs {sorted(_INPUTS)}); this model's "
                                   f"IR takes {sorted(names)}. Export it with stateful=True (the default).",
                                   param="logprobs", code="logprobs_unavailable")
                self.vocabulary = int(model.outputs[0].get_partial_shape()[-1].get_length())
                self._compiled = core.compile_model(model, self.device, self.properties)
            return self._compiled

    def session(self) -> ScoreSession:
        """A new sequence to score (its own KV state)."""
        return ScoreSession(self)


class ScoreSession:
    """One sequence fed to the scorer piece by piece: ``extend(ids, k)`` scores the new ids after those before."""

    def __init__(self, scorer: Scorer) -> None:
        compiled = scorer._model()  # noqa: SLF001 - the session is part of the scorer
        self.scorer, self.request = scorer, compiled.create_infer_request()
        self.names = {i.get_any_name() for i in compiled.inputs}
        self.request.reset_state()
        self.past: list[int] = []
        self._last: Any = None  # logits after the last fed token: they predict the next one

    def extend(self, ids: Sequence[int], k: int, score: bool = True) -> list[TokenScore]:
        """Scores of ``ids``, which follow the tokens fed so far (the very first token gets None); ``score=False``
        feeds them only (a prompt whose scores nobody asked)."""
        self._check(ids)
        scores: list[TokenScore] = []
        for start in range(0, len(ids), CHUNK):
            piece = [int(t) for t in ids[start:start + CHUNK]]
            if score:
                scores.extend(self._chunk(piece, k))
            else:
                self._last = self._infer(piece)[-1].copy()
                self.past.extend(piece)
        return scores

    def _check(self, ids: Sequence[int]) -> None:
        check_ids(ids, self.scorer.vocabulary)

    def _chunk(self, ids: list[int], k: int) -> list[TokenScore]:
        import numpy as np

        logits = self._infer(ids)  # [len(ids), vocabulary]: row i predicts ids[i + 1]
        rows = logits[:-1] if self._last is None else np.concatenate([self._last[None], logits[:-1]])
        scored = top_k(rows, np.asarray(ids[1:] if self._last is None else ids), k) if len(rows) else []
        first = [TokenScore(ids[0], None)] if self._last is None else []
        self._last = logits[-1].copy()
        self.past.extend(ids)
        return first + [TokenScore(t, lp, top) for t, (lp, top) in zip(ids[len(first):], scored)]

    def _infer(self, ids: list[int]) -> Any:
        import numpy as np

        total = len(self.past) + len(ids)
        feed = {"input_ids": np.asarray([ids], dtype=np.int64),
                "attention_mask": np.ones((1, total), dtype=np.int64)}
        if "position_ids" in self.names:
            feed["position_ids"] = np.arange(len(self.past), total, dtype=np.int64)[None]
        if "beam_idx" in self.names:
            feed["beam_idx"] = np.zeros(1, dtype=np.int32)
        with self.scorer._lock:  # noqa: SLF001 - the session is part of the scorer
            self.request.infer(feed)
            return self.request.get_output_tensor(0).data[0].copy()


class TokenText:
    """The exact bytes of every token id, from the detokenizer's vocabulary (a byte-level BPE's holds them
    as they are); for a detokenizer that rewrites its pieces (SentencePiece's "▁"), each token decoded alone."""

    def __init__(self, folder: Path, decode: Any) -> None:
        self.decode = decode
        self._vocab: list[bytes] | None = None
        self.special: frozenset[int] = frozenset()
        self._read(folder / DETOKENIZER_FILE)

    def _read(self, path: Path) -> None:
        import openvino

        if not path.is_file():
            return
        model = openvino.Core().read_model(path)
        ops = model.get_ordered_ops()
        if {op.get_type_name() for op in ops} - _PLAIN_DETOKENIZER:
            return
        vocab = next(op for op in ops if op.get_type_name() == "VocabDecoder")
        begins, ends, chars, *skip = (vocab.input_value(i).get_node().get_data() for i in range(1, 5))
        blob = chars.tobytes()
        self._vocab = [blob[b:e] for b, e in zip(begins.tolist(), ends.tolist())]
        self.special = frozenset(int(t) for t in (skip[0].tolist() if skip else ()))

    def bytes_of(self, token: int) -> bytes:
        """The token's bytes (a special token's own text: ``<|im_end|>``)."""
        if self._vocab is not None and 0 <= token < len(self._vocab):
            return self._vocab[token]
        return self.decode([token]).encode("utf-8")

    def visible(self, token: int) -> bytes:
        """What the token adds to decoded text (special tokens add nothing: decoding skips them)."""
        return b"" if token in self.special else self.bytes_of(token)


def token_string(data: bytes) -> str:
    """A token as OpenAI writes it: its text, or ``bytes:\\xe2\\x80`` when it is not whole UTF-8 characters."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)
