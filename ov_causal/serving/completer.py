"""OpenAI-style requests on the serving core: prompt -> token ids -> GenAI settings -> text, usage, finish reason.

No web framework here: ``openai_api`` turns HTTP into calls of ``Completer`` and ``serve`` runs it on Ray Serve.
Every request joins the core's running batch, so streaming and non-streaming requests advance together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..config.sampling import SamplingParams
from ..errors import APIError
from ..model.structured import shortest_output
from ..model.tool_calls import check_format, detect_format
from ..model.tool_prompt import native
from .grammar import GrammarCheck
from .logprobs import Scoring
from .request import Request, SequenceResult
from .scheduler import ServingCore

__all__ = ["APIError", "Completer", "Output", "Prompt", "Sampling"]


@dataclass(frozen=True)
class Sampling:
    """The generation settings of one request (OpenAI names, already validated by the schema); mapped to GenAI's
    by ``config.sampling.SamplingParams.from_openai`` in ``Completer.generation_config``."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    constraint: dict[str, str] | None = None  # response_format compiled (``Completer.prepare``)


@dataclass(frozen=True)
class Output:
    """One generated choice."""

    text: str
    tokens: int  # generated tokens, the end-of-sequence token included
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    ids: tuple[int, ...] = ()  # the generated tokens (all of them: a stop string cuts the text only)


@dataclass
class Prompt:
    """A tokenized prompt."""

    ids: list[int]
    length: int = field(init=False)

    def __post_init__(self) -> None:
        self.length = len(self.ids)


class Completer:
    """Tokenize, schedule on the core and decode, for one served model.

    Args:
        core: the serving core holding the model.
        name: the model id clients send in ``model``.
    """

    def __init__(self, core: ServingCore, name: str, tool_format: str | None = None) -> None:
        self.core, self.name, self.context = core, name, core.context
        template = None if core.chat_template is None else core.chat_template.source
        self.tool_format = check_format(tool_format) if tool_format else detect_format(template)
        self.native_tools = native(template)  # the template renders tools=; else the fallback prompt
        self.grammars = GrammarCheck(core.folder)
        self._shortest_tokens: dict[str, int] = {}  # shortest output of a response_format -> its tokens
        self.grammars.start()  # in the background: ~1 s and ~55 MiB, ready before the first response_format
        self.scoring = Scoring(core)  # logprobs: the IR compiled on the first request that asks

    def prepare(self, sampling: Sampling) -> Sampling:
        """``sampling`` with its response_format compiled as the engine will (blocks up to the grammar budget:
        call it off the event loop). APIError(400) for a format the engine cannot take."""
        if sampling.response_format is None or sampling.constraint is not None:
            return sampling
        return replace(sampling, constraint=self.grammars.constraint(sampling.response_format))

    @property
    def models(self) -> list[str]:
        """The ids clients may send as ``model``: the base's, then each served adapter's."""
        return [self.name, *self.core.adapters]

    def check_model(self, requested: str | None) -> str | None:
        """The adapter a request's ``model`` picks (None: the base); APIError(404) naming the served ids."""
        if requested is None or requested == self.name:
            return None
        if requested in self.core.adapters:
            return requested
        raise APIError(404, f"The model {requested!r} does not exist on this server; it serves "
                       f"{', '.join(map(repr, self.models))}.", param="model", code="model_not_found")

    def encode_text(self, prompt: str | list[int]) -> Prompt:
        """A text prompt tokenized, or token ids as they are (APIError(400) for one outside the vocabulary)."""
        if isinstance(prompt, list):
            self.scoring.check_ids(prompt)
            return Prompt(list(prompt))
        return Prompt(self.core.encode(prompt))

    def encode_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Prompt:
        if self.core.chat_template is None:
            raise APIError(400, f"model {self.name!r} has no chat template, so chat completions are not available. "
                           "Use /v1/completions, or start the server with chat_template= (--chat-template FILE).",
                           param="messages", code="no_chat_template")
        text = self.core.chat_template.render(messages, add_generation_prompt=True, tools=tools)
        return Prompt(self.core.encode(text, add_special_tokens=False))  # the template writes the special tokens

    def _max_tokens(self, prompt: Prompt, requested: int | None, default: int | None) -> int:
        room = None if self.context is None else self.context - prompt.length
        wanted = requested if requested is not None else (default if default is not None else room)
        if wanted is None:
            wanted = 256
        if room is not None and wanted > room:
            raise APIError(400, f"This model's maximum context length is {self.context} tokens. However, you "
                           f"requested {prompt.length + wanted} tokens ({prompt.length} in the prompt, {wanted} for "
                           "the completion). Please reduce the prompt or max_tokens.",
                           param="max_tokens", code="context_length_exceeded")
        return wanted

    def generation_config(self, prompt: Prompt, sampling: Sampling, default_max: int | None) -> Any:
        """The ``openvino_genai.GenerationConfig`` of a request (the folder's defaults, then the request's)."""
        base = self.core.generation_config()
        params = SamplingParams.from_openai(
            self._max_tokens(prompt, sampling.max_tokens, default_max), sampling.temperature, sampling.top_p,
            sampling.n, sampling.stop, sampling.seed, sampling.presence_penalty, sampling.frequency_penalty,
        )
        if sampling.n > 1 and not params.sampled(base):
            raise APIError(400, f"n={sampling.n} asks for several choices, but greedy decoding would return the "
                           "same text each time: set temperature > 0 (or n=1).", param="n")
        constraint = self.prepare(sampling).constraint
        self._check_room(constraint, params.max_new_tokens)
        return replace(params, constraint=constraint).to_genai(base)

    def _check_room(self, constraint: dict[str, str] | None, max_tokens: int | None) -> None:
        """APIError(400) when ``max_tokens`` cannot hold even the shortest output the response_format allows."""
        if constraint is None or max_tokens is None:
            return
        text = shortest_output(tuple(sorted(constraint.items())))
        if text not in self._shortest_tokens:
            self._shortest_tokens[text] = len(self.core.encode(text, add_special_tokens=False))
        need = self._shortest_tokens[text]
        if max_tokens < need:
            raise APIError(400, f"max_tokens={max_tokens} cannot hold the shortest JSON this response_format allows: "
                           f"{text} is {need} tokens. Raise max_tokens (real values take more), or ask for fewer "
                           "properties.", param="max_tokens", code="max_tokens_too_small_for_response_format")

    def submit(self, prompt: Prompt, sampling: Sampling, default_max: int | None,
               loop: asyncio.AbstractEventLoop | None = None, adapter: str | None = None) -> Request:
        """Start a request in the running batch (APIError for bad settings or a full queue); ``adapter``: the
        served LoRA adapter it runs with (``check_model``), None for the base."""
        return self.core.submit(prompt.ids, self.generation_config(prompt, sampling, default_max), loop, adapter)

    def outputs(self, results: list[SequenceResult], stop: Sequence[str]) -> list[Output]:
        return [self._output(r, stop) for r in results]

    def complete(self, prompt: Prompt, sampling: Sampling, default_max: int | None = 16) -> list[Output]:
        """Generate ``sampling.n`` choices for one prompt (blocking; the other requests run meanwhile)."""
        with self.submit(prompt, sampling, default_max) as request:
            return self.outputs(request.result(), sampling.stop)

    async def acomplete(self, request: Request, sampling: Sampling) -> list[Output]:
        try:
            return self.outputs(await request.aresult(), sampling.stop)
        finally:
            request.cancel()  # a no-op once finished; frees the request when the client went away

    async def stream(self, request: Request, sampling: Sampling) -> AsyncIterator[str | Output]:
        """Yield text pieces as they are generated, then the finished ``Output`` (n=1)."""
        text = IncrementalText(self.core.decode)
        sent, reason = "", None
        hold = max((len(s) for s in sampling.stop), default=1) - 1  # a stop string may be split across pieces
        try:
            async for chunk in request:
                reason = chunk.finish_reason or reason
                if not text.extend(chunk.tokens):
                    continue  # a character split across tokens: wait for the rest
                cut = _first_stop(text.text, sampling.stop, start=len(sent))
                if cut is not None:
                    if text.text[len(sent):cut]:
                        yield text.text[len(sent):cut]
                    sent = text.text[:cut]
                    break
                ready = text.text[len(sent): max(len(sent), len(text.text) - hold)]
                if ready:
                    yield ready
                    sent += ready
        finally:
            request.cancel()
        final = self._output(SequenceResult(text.tokens, reason or _reason(text.tokens, request)), sampling.stop)
        if final.text.startswith(sent) and final.text[len(sent):]:
            yield final.text[len(sent):]
        yield final

    def _output(self, result: SequenceResult, stop: Sequence[str]) -> Output:
        text = self.core.decode(result.tokens)
        cut = _first_stop(text, stop)
        if cut is not None:
            return Output(text[:cut], len(result.tokens), "stop", tuple(result.tokens))
        return Output(text, len(result.tokens), result.finish_reason, tuple(result.tokens))


def _reason(tokens: list[int], request: Request) -> str:
    return "length" if len(tokens) >= request.limit else "stop"


class IncrementalText:
    """The text of a growing token list, decoding a few tokens per step instead of the whole list.

    Each step decodes the tokens since the last complete piece twice, with and without the new ones, and keeps
    the difference: the same text as decoding everything (tokenizers that drop a word's leading space at the
    start of a decode drop it in both), at a cost that does not grow with the reply.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self.decode, self.tokens, self.text = decode, [], ""
        self._prefix = self._read = 0  # tokens[_prefix:_read] are decoded into text already: the context

    def extend(self, tokens: Sequence[int]) -> bool:
        """Add tokens; False while the text ends inside a character (wait for the next tokens)."""
        self.tokens.extend(tokens)
        before = self.decode(self.tokens[self._prefix:self._read])
        after = self.decode(self.tokens[self._prefix:])
        if after.endswith("\ufffd"):
            return False
        self.text += after[len(before):]
        self._prefix, self._read = self._read, len(self.tokens)
        return True


def _first_stop(text: str, stop: Sequence[str], start: int = 0) -> int | None:
    found = [i for i in (text.find(s, start) for s in stop) if i >= 0]
    return min(found) if found else None
