"""The OpenAI HTTP API (``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``) as a FastAPI app.

Requests follow the OpenAI schema; a field we do not implement is refused (400), never silently dropped.
Errors carry OpenAI's body: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .completer import APIError, Completer, Output, Prompt, Sampling

REPLICA_HEADER = "x-ov-causal-replica"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class _GenerationRequest(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if len(stop) > 4 or any(not s for s in stop):
            raise APIError(400, "stop takes up to 4 non-empty strings.", param="stop")
        if self.stream and self.n > 1:
            raise APIError(400, "stream=true returns one choice: use n=1, or stream=false for n > 1.", param="n")
        return Sampling(max_tokens if max_tokens is not None else self.max_tokens, self.temperature, self.top_p,
                        self.n, stop, self.seed, self.presence_penalty, self.frequency_penalty)


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str] = Field(min_length=1)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def plain(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def _usage(prompt: Prompt, outputs: list[Output]) -> dict[str, int]:
    done = sum(o.tokens for o in outputs)
    return {"prompt_tokens": prompt.length, "completion_tokens": done, "total_tokens": prompt.length + done}


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def build_app(completer: Completer, replica: str = "") -> FastAPI:
    """The FastAPI app serving ``completer``; ``replica`` is echoed in the ``x-ov-causal-replica`` header."""
    app = FastAPI(title="ov_causal OpenAI-compatible API")
    headers = {REPLICA_HEADER: replica} if replica else {}
    created = int(time.time())

    def reply(body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(body, headers=headers)

    @app.exception_handler(APIError)
    def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if error.get("type") == "json_invalid":
            return _api_error(_, APIError(400, "The request body is not valid JSON: "
                                          f"{error.get('ctx', {}).get('error', error['msg'])}."))
        names = [str(p) for p in error["loc"] if p != "body" and not isinstance(p, int)]
        if not names:
            return _api_error(_, APIError(400, f"The request body must be a JSON object: {error['msg']}."))
        code = "missing_required_parameter" if error.get("type") == "missing" else "invalid_value"
        return _api_error(_, APIError(400, f"Invalid value for {'.'.join(names)!r}: {error['msg']}.",
                                      param=names[0], code=code))

    @app.exception_handler(HTTPException)
    def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _api_error(_, APIError(exc.status_code, str(exc.detail)))

    @app.get("/health")
    def health() -> JSONResponse:
        return reply({"status": "ok"})

    def model_card() -> dict[str, Any]:
        return {"id": completer.name, "object": "model", "created": created, "owned_by": "ov_causal"}

    @app.get("/v1/models")
    def models() -> JSONResponse:
        return reply({"object": "list", "data": [model_card()]})

    @app.get("/v1/models/{model:path}")
    def model(model: str) -> JSONResponse:
        completer.check_model(model)
        return reply(model_card())

    @app.post("/v1/completions")
    def completions(body: CompletionRequest) -> Any:
        completer.check_model(body.model)
        sampling = body.sampling()
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        meta = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": completer.name}
        if body.stream:
            if len(prompts) != 1:
                raise APIError(400, "stream=true takes one prompt, not a list.", param="prompt")
            prompt = completer.encode_text(prompts[0])
            completer.generate_kwargs(prompt, sampling, 16)  # refuse bad settings before the stream starts
            return _stream(completer, prompt, sampling, meta, body, chat=False, headers=headers)
        choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for text in prompts:
            prompt = completer.encode_text(text)
            outputs = completer.complete(prompt, sampling, 16)
            for output in outputs:
                choices.append({"index": len(choices), "text": output.text, "logprobs": None,
                                "finish_reason": output.finish_reason})
            usage = {k: usage[k] + v for k, v in _usage(prompt, outputs).items()}
        return reply({**meta, "choices": choices, "usage": usage})

    @app.post("/v1/chat/completions")
    def chat(body: ChatRequest) -> Any:
        completer.check_model(body.model)
        sampling = body.sampling(body.max_completion_tokens)
        prompt = completer.encode_chat([m.plain() for m in body.messages])
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": completer.name}
        if body.stream:
            completer.generate_kwargs(prompt, sampling, None)
            return _stream(completer, prompt, sampling, {**meta, "object": "chat.completion.chunk"}, body,
                           chat=True, headers=headers)
        outputs = completer.complete(prompt, sampling, None)
        choices = [{"index": i, "message": {"role": "assistant", "content": o.text}, "logprobs": None,
                    "finish_reason": o.finish_reason} for i, o in enumerate(outputs)]
        return reply({**meta, "choices": choices, "usage": _usage(prompt, outputs)})

    return app


def _stream(completer: Completer, prompt: Prompt, sampling: Sampling, meta: dict[str, Any],
            body: _GenerationRequest, chat: bool, headers: dict[str, str]) -> StreamingResponse:
    """Server-sent events: one chunk per text piece, one with the finish reason, optional usage, ``[DONE]``."""

    def choice(text: str | None, finish: str | None) -> dict[str, Any]:
        if chat:
            delta = {} if text is None else {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def events() -> Iterator[str]:
        if chat:
            yield _sse({**meta, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None}]})
        try:
            for item in completer.stream(prompt, sampling, None if chat else 16):
                if isinstance(item, str):
                    yield _sse({**meta, "choices": [choice(item, None)]})
                else:
                    yield _sse({**meta, "choices": [choice(None, item.finish_reason)]})
                    if body.stream_options is not None and body.stream_options.include_usage:
                        yield _sse({**meta, "choices": [], "usage": _usage(prompt, [item])})
        except Exception as exc:  # the status line is sent already: report in the stream, as OpenAI does
            error = exc if isinstance(exc, APIError) else APIError(500, str(exc), kind="server_error")
            yield _sse(error.body())
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
