"""OpenAI's ``logprobs`` on the serving core: what a request asks, its tokens scored (``serving.scorer``), the shapes.

Chat: ``logprobs: true`` + ``top_logprobs: 0..20`` -> ``choices[i].logprobs.content``, a list of
``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``. Completions: ``logprobs: 0..5`` ->
``choices[i].logprobs = {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}``; with
``echo: true`` the prompt's tokens come first (the first one's logprob is null: nothing predicts it) and
``max_tokens: 0`` scores the prompt without generating (lm-eval's loglikelihood requests).

Every log-probability comes from one place, the scorer's pass over prompt + generated tokens, so a greedy
choice is its own ``top_logprobs``' first entry with the same number. Scoring runs in a worker thread, never on
the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import APIError
from .request import Chunk
from .scorer import Scorer, ScoreSession, TokenScore, TokenText, check_ids, token_string, vocabulary

CHAT_TOP = 20  # OpenAI's limits
COMPLETION_TOP = 5


@dataclass(frozen=True)
class Ask:
    """What a request asks: ``top`` alternatives per token (0: the chosen token's logprob only); ``echo``:
    the prompt's tokens too; ``chat``: the chat shape."""

    top: int
    echo: bool = False
    chat: bool = False


def chat_ask(logprobs: bool, top_logprobs: int | None) -> Ask | None:
    """The chat request's ask (its fields range-checked by the schema), or None; 400 for top without logprobs."""
    if top_logprobs is not None and not logprobs:
        raise APIError(400, f"top_logprobs={top_logprobs} needs logprobs=true.", param="top_logprobs")
    return Ask(top_logprobs or 0, chat=True) if logprobs else None


def completion_ask(logprobs: int | None, echo: bool, max_tokens: int | None, stream: bool, n: int) -> Ask | None:
    """The completion request's ask, or None; 400 for the combinations this server does not serve."""
    if max_tokens == 0 and not echo:
        raise APIError(400, "max_tokens=0 generates nothing: it is only allowed with echo=true (prompt scoring).",
                       param="max_tokens")
    if max_tokens == 0 and n > 1:
        raise APIError(400, f"max_tokens=0 scores the prompt once: n={n} would repeat it; use n=1.", param="n")
    if echo and stream:
        raise APIError(400, "echo=true is not supported with stream=true: use stream=false to score a prompt.",
                       param="echo")
    return None if logprobs is None else Ask(logprobs, echo=echo)


class Scoring:
    """The scorer of one served model and its token texts, made on the first request that asks logprobs."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._scorer: Scorer | None = None
        self._text: TokenText | None = None
        self._vocabulary: int | None = None

    def check_ids(self, ids: Sequence[int]) -> None:
        """APIError(400) for token ids a prompt sends that are outside the model's vocabulary."""
        if self._vocabulary is None:
            self._vocabulary = vocabulary(self.core.folder)
        check_ids(ids, self._vocabulary)

    def check(self, adapter: str | None) -> None:
        if adapter is not None:
            raise APIError(400, f"logprobs are not available for the LoRA adapter {adapter!r}: the scorer runs the "
                           "base model. Ask the base model, or leave logprobs out.", param="logprobs",
                           code="logprobs_unavailable")

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer(self.core.folder, self.core.device, self.core.properties)
        return self._scorer

    @property
    def text(self) -> TokenText:
        if self._text is None:
            self._text = TokenText(self.core.folder, self.core.decode)
        return self._text

    def session(self, prompt: Sequence[int]) -> ScoreSession:
        """A session with ``prompt`` fed (unscored): blocking, call it off the event loop."""
        session = self.scorer.session()
        session.extend(prompt, 0, score=False)
        return session

    def score(self, prompt: Sequence[int], generated: Sequence[int], ask: Ask) -> list[TokenScore]:
        """The scores of ``generated`` after ``prompt`` (of both with ``ask.echo``); blocking."""
        if ask.echo:
            return self.scorer.session().extend([*prompt, *generated], ask.top)
        return self.session(prompt).extend(generated, ask.top) if generated else []

    async def ascore(self, prompt: Sequence[int], generated: Sequence[int], ask: Ask) -> list[TokenScore]:
        return await asyncio.to_thread(self.score, prompt, generated, ask)

    def shape(self, scores: list[TokenScore], ask: Ask, offset: int = 0) -> dict[str, Any]:
        """``scores`` in the OpenAI shape of ``ask``; ``offset``: characters of text before the first token."""
        return self._chat(scores) if ask.chat else self._completion(scores, offset)

    def _entry(self, token: int, logprob: float) -> dict[str, Any]:
        data = self.text.bytes_of(token)
        return {"token": token_string(data), "logprob": logprob, "bytes": list(data)}

    def _chat(self, scores: list[TokenScore]) -> dict[str, Any]:
        content = [{**self._entry(s.id, s.logprob if s.logprob is not None else 0.0),
                    "top_logprobs": [self._entry(t, lp) for t, lp in s.top]} for s in scores]
        return {"content": content, "refusal": None}

    def _completion(self, scores: list[TokenScore], offset: int) -> dict[str, Any]:
        offsets, position = [], offset
        for s in scores:
            offsets.append(position)
            position += _characters(self.text.visible(s.id))
        first = scores[0].logprob is None if scores else False
        return {"tokens": [token_string(self.text.bytes_of(s.id)) for s in scores],
                "token_logprobs": [s.logprob for s in scores],
                "top_logprobs": [None if first and i == 0 else {token_string(self.text.bytes_of(t)): lp
                                                               for t, lp in s.top} for i, s in enumerate(scores)],
                "text_offset": offsets}

    def returned(self, ids: Sequence[int], text: str) -> list[int]:
        """The generated tokens behind ``text``: all of them, or (a stop string cut the text) the fewest that
        hold it, the token the cut falls in included."""
        want, have = len(text.encode("utf-8")), 0
        total = sum(len(self.text.visible(t)) for t in ids)
        if total <= want:
            return list(ids)
        for i, token in enumerate(ids):
            if have >= want:
                return list(ids[:i])
            have += len(self.text.visible(token))
        return list(ids)


def _characters(data: bytes) -> int:
    """Characters that ``data`` starts (UTF-8 lead bytes): offsets stay right across tokens that split one."""
    return sum(1 for b in data if b & 0xC0 != 0x80)


class Tee:
    """A request seen through: every chunk of its first sequence is kept as it is read (``completer.stream``
    reads it), so that the text pieces it yields can be matched with their tokens."""

    def __init__(self, request: Any) -> None:
        self.request, self.tokens = request, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.request, name)

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for chunk in self.request:
            if chunk.index == 0:
                self.tokens.extend(chunk.tokens)
            yield chunk


class Piece(str):
    """A streamed text piece with the OpenAI logprobs of the tokens it completes (``logprobs``)."""

    logprobs: dict[str, Any] | None = None


def stream_pieces(scoring: Scoring, stream: Callable[[Any], AsyncIterator[Any]], request: Any,
                  prompt: Sequence[int], ask: Ask | None) -> AsyncIterator[Any]:
    """``stream(request)`` (``Completer.stream``'s pieces), with each text piece's logprobs when ``ask`` asks."""
    if ask is None:
        return stream(request)
    tee = Tee(request)
    return scored_stream(scoring, stream(tee), tee, prompt, ask)


async def scored_stream(scoring: Scoring, pieces: AsyncIterator[Any], tee: Tee, prompt: Sequence[int],
                        ask: Ask) -> AsyncIterator[Any]:
    """``pieces`` (text, then the final ``Output``) with each text piece's tokens scored: a token goes out with
    the piece that completes its text; tokens left at the end (the end-of-sequence token) with an empty piece."""
    session = await asyncio.to_thread(scoring.session, prompt)
    done = sent = scored = chars = 0  # tokens scored, bytes of text sent, bytes of the tokens scored, characters
    async for item in pieces:
        if isinstance(item, str):
            sent += len(item.encode("utf-8"))
            count = 0
            for token in tee.tokens[done:]:
                size = len(scoring.text.visible(token))
                if scored + size > sent:
                    break
                scored, count = scored + size, count + 1
            item, chars = await _piece(scoring, session, item, tee.tokens[done:done + count], ask, chars)
            done += count
        else:
            left = scoring.returned(tee.tokens, item.text)[done:]
            if left:
                yield (await _piece(scoring, session, "", left, ask, chars))[0]
        yield item


async def _piece(scoring: Scoring, session: ScoreSession, text: str, tokens: list[int], ask: Ask,
                 chars: int) -> tuple[Piece, int]:
    piece = Piece(text)
    scores = await asyncio.to_thread(session.extend, tokens, ask.top) if tokens else []
    piece.logprobs = scoring.shape(scores, ask, chars)
    return piece, chars + sum(_characters(scoring.text.visible(s.id)) for s in scores)


async def completion_extras(scoring: Scoring, prompts: Sequence[Any], echoes: Sequence[str], results: Sequence[Any],
                            ask: Ask | None) -> list[list[tuple[str, dict[str, Any] | None]]]:
    """Per prompt, per choice: the text echoed before it ("" without echo) and its logprobs (None unasked)."""
    out = []
    for prompt, echo, outputs in zip(prompts, echoes, results):
        row = []
        for output in outputs:
            if ask is None:
                row.append((echo, None))
                continue
            generated = scoring.returned(output.ids, output.text)
            scores = await scoring.ascore(prompt.ids, generated, ask)
            row.append((echo, scoring.shape(scores, ask)))
        out.append(row)
    return out


def check_scored_prompt(prompt: Any, context: int | None) -> None:
    """400 for a prompt scored without generating (max_tokens=0) that the engine would have refused."""
    if not prompt.ids:
        raise APIError(400, "The prompt is empty after tokenization: send at least one token.", param="prompt")
    if context is not None and prompt.length > context:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, your prompt has "
                       f"{prompt.length} tokens. Please reduce the prompt.", param="prompt",
                       code="context_length_exceeded")
