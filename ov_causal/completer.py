"""One model answering OpenAI-style requests: prompt -> tokens -> ``model.generate`` -> text, usage, finish reason.

No web framework here: ``openai_api`` turns HTTP into calls of ``Completer`` and ``serve`` runs it on Ray Serve.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import OVCausalError


class APIError(OVCausalError):
    """A request the server refuses: an HTTP status and the fields of an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Sampling:
    """The generation settings of one request (OpenAI names, already validated by the schema)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True)
class Output:
    """One generated choice."""

    text: str
    tokens: int  # generated tokens, the end-of-sequence token included
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


@dataclass
class Prompt:
    """A tokenized prompt: ids [1, length] and mask."""

    input_ids: Any
    attention_mask: Any
    length: int = field(init=False)

    def __post_init__(self) -> None:
        self.length = int(self.input_ids.shape[1])


@dataclass(eq=False)
class _Pending:
    """A non-streaming request waiting for a generate() call; the call that serves it fills ``output``."""

    prompt: Prompt
    kwargs: dict[str, Any]
    key: tuple[Any, ...]
    output: list[list[int]] | None = None
    error: BaseException | None = None


class Completer:
    """Tokenize, generate and decode for one loaded ov_causal model; one generate() call at a time.

    Requests that arrive while a call runs wait for the next one, and waiting requests with the same
    settings (and no seed) share it: they go to ``generate`` as one left-padded batch, which the GenAI
    engine runs by continuous batching. Greedy output is the same as one request at a time.

    Args:
        model: an ov_causal model with its tokenizer (``model.tokenizer``).
        name: the model id clients send in ``model``.
        chat_template: a Jinja chat template for tokenizers that have none (used by chat completions).
        max_batch: most requests one generate() call serves (1: no batching).
    """

    def __init__(self, model: Any, name: str, chat_template: str | None = None, max_batch: int = 16) -> None:
        self.model, self.name, self.tokenizer = model, name, model.tokenizer
        if self.tokenizer is None:
            raise APIError(500, f"model {name!r} has no tokenizer beside it; the server needs one.",
                           kind="server_error")
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        config = model.config
        self.context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        eos = model.generation_config.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set(eos or ())
        self._lock = threading.Lock()  # a GenAI pipeline runs one generate() at a time
        self._waiting: list[_Pending] = []
        self._waiting_lock = threading.Lock()
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []  # size of each shared generate() call, for tests and logs

    def check_model(self, requested: str | None) -> None:
        if requested is not None and requested != self.name:
            raise APIError(404, f"The model {requested!r} does not exist on this server; it serves {self.name!r}.",
                           param="model", code="model_not_found")

    def encode_text(self, prompt: str) -> Prompt:
        encoded = self.tokenizer(prompt, return_tensors="pt")
        return Prompt(encoded["input_ids"], encoded["attention_mask"])

    def encode_chat(self, messages: list[dict[str, Any]]) -> Prompt:
        if not self.tokenizer.chat_template:
            raise APIError(400, f"model {self.name!r} has no chat template, so chat completions are not available. "
                           "Use /v1/completions, or start the server with chat_template= (--chat-template FILE).",
                           param="messages", code="no_chat_template")
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                     return_tensors="pt")
        return Prompt(encoded["input_ids"], encoded["attention_mask"])

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

    def generate_kwargs(self, prompt: Prompt, sampling: Sampling, default_max: int | None) -> dict[str, Any]:
        """transformers ``generate`` keywords for a request (the model maps them onto OpenVINO GenAI)."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos, default=0)
        kwargs: dict[str, Any] = {"max_new_tokens": self._max_tokens(prompt, sampling.max_tokens, default_max),
                                  "pad_token_id": pad, "attention_mask": prompt.attention_mask}
        if sampling.temperature == 0:
            kwargs["do_sample"] = False
        elif sampling.temperature is not None:
            kwargs.update(do_sample=True, temperature=sampling.temperature)
        sampled = kwargs.get("do_sample", bool(self.model.generation_config.do_sample))
        if sampled and sampling.top_p is not None:
            kwargs["top_p"] = sampling.top_p
        if sampling.n > 1:
            if not sampled:
                raise APIError(400, f"n={sampling.n} asks for several choices, but greedy decoding would return the "
                               "same text each time: set temperature > 0 (or n=1).", param="n")
            kwargs["num_return_sequences"] = sampling.n
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        for key in ("presence_penalty", "frequency_penalty"):
            if getattr(sampling, key):
                kwargs[key] = getattr(sampling, key)
        return kwargs

    def _generate(self, prompt: Prompt, kwargs: dict[str, Any], seed: int | None) -> Any:
        import torch

        with self._lock:
            # Sampling follows torch's generator; without a seed each request draws a fresh one.
            torch.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(4), "little"))
            try:
                return self.model.generate(prompt.input_ids, **kwargs)
            except OVCausalError as exc:
                raise APIError(400, str(exc)) from exc

    def complete(self, prompt: Prompt, sampling: Sampling, default_max: int | None = 16) -> list[Output]:
        """Generate ``sampling.n`` choices for one prompt (sharing a batched call with others when it can)."""
        kwargs = self.generate_kwargs(prompt, sampling, default_max)
        if sampling.seed is not None or sampling.n > 1 or self.max_batch < 2:
            output = self._generate(prompt, kwargs, sampling.seed)
            rows = [row[prompt.length:].tolist() for row in output]
        else:
            rows = [self._generate_shared(prompt, kwargs)]
        return [self._output(row, kwargs["max_new_tokens"], sampling.stop) for row in rows]

    def _generate_shared(self, prompt: Prompt, kwargs: dict[str, Any]) -> list[int]:
        """Queue the request; whichever waiting thread gets the model next serves every compatible request."""
        settings = {k: v for k, v in kwargs.items() if k != "attention_mask"}
        item = _Pending(prompt, kwargs, tuple(sorted((k, repr(v)) for k, v in settings.items())))
        with self._waiting_lock:
            self._waiting.append(item)
        with self._lock:
            if item.output is None and item.error is None:
                with self._waiting_lock:
                    batch = [p for p in self._waiting if p.key == item.key][: self.max_batch]
                    if item not in batch:
                        batch[-1] = item
                    for p in batch:
                        self._waiting.remove(p)
                self._run_batch(batch, settings)
        if item.error is not None:
            raise item.error
        assert item.output is not None
        return item.output

    def _run_batch(self, batch: list[_Pending], settings: dict[str, Any]) -> None:
        import torch

        width = max(p.prompt.length for p in batch)
        pad = settings["pad_token_id"]
        ids = torch.full((len(batch), width), pad, dtype=batch[0].prompt.input_ids.dtype)
        mask = torch.zeros((len(batch), width), dtype=batch[0].prompt.attention_mask.dtype)
        for row, p in enumerate(batch):  # left padding, as decoder-only generation expects
            ids[row, width - p.prompt.length:] = p.prompt.input_ids[0]
            mask[row, width - p.prompt.length:] = p.prompt.attention_mask[0]
        self.batch_sizes.append(len(batch))
        torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
        try:
            output = self.model.generate(ids, **{**settings, "attention_mask": mask})
        except BaseException as exc:
            error = APIError(400, str(exc)) if isinstance(exc, OVCausalError) else exc
            for p in batch:
                p.error = error
            return
        for row, p in enumerate(batch):
            p.output = output[row, width:].tolist()

    def stream(self, prompt: Prompt, sampling: Sampling, default_max: int | None = 16) -> Iterator[str | Output]:
        """Yield text pieces as they are generated, then the finished ``Output`` (n=1)."""
        from transformers import TextIteratorStreamer

        kwargs = self.generate_kwargs(prompt, sampling, default_max)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["output"] = self._generate(prompt, {**kwargs, "streamer": streamer}, sampling.seed)
            except BaseException as exc:  # reported to the client after the pieces already sent
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="ov_causal-stream", daemon=True)
        thread.start()
        held, stopped = "", False
        hold = max((len(s) for s in sampling.stop), default=1) - 1  # a stop string may be split across pieces
        try:
            for piece in streamer:
                if stopped:
                    continue  # generation ends on its own at the stop string; drain the rest
                held += piece
                cut = _first_stop(held, sampling.stop)
                if cut is not None:
                    held, stopped = held[:cut], True
                ready = held if stopped else held[: max(0, len(held) - hold)]
                if ready:
                    yield ready
                    held = held[len(ready):]
        except GeneratorExit:  # the client went away: GenAI stops at its next token and frees the model
            streamer.stop_requested = True
            raise
        thread.join()
        if "error" in result:
            raise result["error"]
        if held and not stopped:
            yield held
        final = self._output(result["output"][0][prompt.length:].tolist(), kwargs["max_new_tokens"], sampling.stop)
        yield final

    def _output(self, tokens: list[int], max_tokens: int, stop: Sequence[str]) -> Output:
        ended = next((i for i, t in enumerate(tokens) if t in self.eos), None)
        if ended is not None:
            tokens = tokens[: ended + 1]
        else:  # rows of a batch are right-padded to the longest
            pad = self.tokenizer.pad_token_id
            while tokens and tokens[-1] == pad:
                tokens.pop()
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = _first_stop(text, stop)
        if cut is not None:
            return Output(text[:cut], len(tokens), "stop")
        return Output(text, len(tokens), "stop" if ended is not None or len(tokens) < max_tokens else "length")


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(found) if found else None
