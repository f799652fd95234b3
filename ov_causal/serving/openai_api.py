"""The OpenAI HTTP API (``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``) as a FastAPI app.

Requests follow the OpenAI schema with its strict types (``"12"`` is not a number, ``NaN`` is refused); a
field we do not implement is refused (400), never silently dropped. Every error carries OpenAI's body:
``{"error": {"message", "type", "param", "code"}}``. ``/health`` and ``/metrics`` (Prometheus) sit beside.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import APIError
from .completer import Completer, Output, Prompt, Sampling
from .http import BodyGuard, Metrics
from .logprobs import (
    CHAT_TOP,
    COMPLETION_TOP,
    Ask,
    chat_ask,
    check_scored_prompt,
    completion_ask,
    completion_extras,
    stream_pieces,
)
from .options import ServeOptions
from .request import Request as CoreRequest
from .tool_requests import ChatDeltas, Tool, ToolCall, ToolChoice, ToolUse, chat_messages, finish_reason_of, tool_use

REPLICA_HEADER = "x-ov-causal-replica"

_INT64 = 2**63
T = TypeVar("T")


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains a lone surrogate ({text[exc.start:exc.end]!r}) at {exc.start}, which is not "
                         "text; send valid Unicode") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class ResponseFormat(_Body):
    model_config = ConfigDict(extra="allow", strict=True)  # json_schema's fields are checked where compiled
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class _GenerationRequest(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=16)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    response_format: ResponseFormat | None = None
    user: Text | None = None

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if len(stop) > 4 or any(not s for s in stop):
            raise APIError(400, "stop takes up to 4 non-empty strings.", param="stop")
        if self.stream and self.n > 1:
            raise APIError(400, "stream=true returns one choice: use n=1, or stream=false for n > 1.", param="n")
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "stream_options is only allowed with stream=true.", param="stream_options")
        return Sampling(max_tokens if max_tokens is not None else self.max_tokens, self.temperature, self.top_p,
                        self.n, stop, self.seed, self.presence_penalty, self.frequency_penalty,
                        None if self.response_format is None else self.response_format.model_dump(exclude_none=True))


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
Prompts = Annotated[list[Text], Field(min_length=1)] | Annotated[list[TokenIds], Field(min_length=1)]


class CompletionRequest(_GenerationRequest):
    prompt: Text | TokenIds | Prompts  # lm-eval sends lists of token ids
    max_tokens: int | None = Field(None, ge=0)  # 0: score the prompt only (echo=true)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=COMPLETION_TOP)


class TextPart(_Body):
    type: Literal["text"]
    text: Text


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | Annotated[list[TextPart], Field(min_length=1)] | None = None  # None: an assistant's tool calls only
    name: Text | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's
    tool_call_id: Text | None = None  # a tool result's (role "tool")

    def plain(self) -> dict[str, Any]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or ())
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=CHAT_TOP)


def _usage(prompt: Prompt, outputs: list[Output]) -> dict[str, int]:
    done = sum(o.tokens for o in outputs)
    return {"prompt_tokens": prompt.length, "completion_tokens": done, "total_tokens": prompt.length + done}


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def build_app(completer: Completer, replica: str = "", max_body_bytes: int = ServeOptions.max_body_bytes,
              body_timeout: float = ServeOptions.body_timeout) -> Any:
    """The ASGI app serving ``completer``; ``replica`` is echoed in the ``x-ov-causal-replica`` header.

    Request bodies over ``max_body_bytes`` get 413, bodies slower than ``body_timeout`` seconds get 408.
    """
    app = FastAPI(title="ov_causal OpenAI-compatible API")
    headers = {REPLICA_HEADER: replica} if replica else {}
    metrics = Metrics(completer.core)
    completer.core.on_finish = metrics.finished
    _add_error_handlers(app, headers)
    _add_status_routes(app, completer, metrics, headers)
    _add_model_routes(app, completer, headers)
    _add_generation_routes(app, completer, headers)
    return BodyGuard(app, max_body_bytes, body_timeout, headers, metrics)


def _error_response(exc: APIError, headers: dict[str, str]) -> JSONResponse:
    extra = {"retry-after": "1"} if exc.status in (429, 503) else {}
    return JSONResponse(exc.body(), status_code=exc.status, headers={**headers, **extra})


def _add_error_handlers(app: FastAPI, headers: dict[str, str]) -> None:
    """Every error answers with OpenAI's body; a client that left gets 499 (nobody reads it)."""

    @app.exception_handler(APIError)
    def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc, headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc), headers)

    @app.exception_handler(HTTPException)
    def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _error_response(APIError(exc.status_code, str(exc.detail)), headers)

    @app.exception_handler(ClientGone)
    def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=499, headers=headers)  # nginx's "client closed request": nobody reads it

    @app.exception_handler(Exception)
    def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(APIError(500, "The server failed on this request.", kind="server_error"), headers)


def _add_status_routes(app: FastAPI, completer: Completer, metrics: Metrics, headers: dict[str, str]) -> None:
    """``/health`` (503 unless the engine serves) and ``/metrics`` (Prometheus)."""

    @app.get("/health")
    def health() -> JSONResponse:
        core = completer.core
        if not core.healthy:
            state = "its engine stalled" if core.stalled else "its engine is being rebuilt" if core.alive else "stopped"
            raise APIError(503, f"The model is not serving ({state}).", kind="server_error", code="unavailable")
        return JSONResponse({"status": "ok"}, headers=headers)

    @app.get("/metrics")
    def prometheus() -> Response:
        data, kind = metrics.render()
        return Response(data, media_type=kind, headers=headers)


def _add_model_routes(app: FastAPI, completer: Completer, headers: dict[str, str]) -> None:
    """``/v1/models`` and ``/v1/models/{model}``: the base this app serves and its LoRA adapters (as vLLM lists
    them: an adapter's ``parent`` is the base)."""
    created = int(time.time())

    def model_card(name: str) -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "ov_causal", "root": name,
                "parent": None}
        if name != completer.name:
            card.update(root=str(completer.core.adapters[name].folder), parent=completer.name)
        return card

    @app.get("/v1/models")
    def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card(m) for m in completer.models]}, headers=headers)

    @app.get("/v1/models/{model:path}")
    def model(model: str) -> JSONResponse:
        return JSONResponse(model_card(completer.check_model(model) or completer.name), headers=headers)


def _add_generation_routes(app: FastAPI, completer: Completer, headers: dict[str, str]) -> None:
    """``/v1/completions`` and ``/v1/chat/completions`` (``complete`` and ``complete_chat``)."""

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http: Request) -> Any:
        return await complete(completer, body, http, headers)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, http: Request) -> Any:
        return await complete_chat(completer, body, http, headers)


async def complete(completer: Completer, body: CompletionRequest, http: Request, headers: dict[str, str]) -> Any:
    """``/v1/completions``: every prompt submitted at once (or none), answered whole or streamed (one prompt)."""
    adapter = completer.check_model(body.model)
    sampling = body.sampling()
    ask = _ask(body)
    if ask is not None:
        completer.scoring.check(adapter)
    one = isinstance(body.prompt, str) or isinstance(body.prompt[0], int)
    texts: list[Any] = [body.prompt] if one else body.prompt
    meta = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": adapter or completer.name}
    _check_prompts(completer, texts, body.stream)
    sampling = await run_in_threadpool(completer.prepare, sampling)
    prompts = [await run_in_threadpool(completer.encode_text, text) for text in texts]
    if body.max_tokens == 0:  # prompt scoring: nothing for the engine to do
        for prompt in prompts:
            check_scored_prompt(prompt, completer.context)
        results = [[Output("", 0, "length")] for _ in prompts]
    else:
        requests = _submit_all(completer, prompts, sampling, 16, adapter)
        if body.stream:
            return await _stream(completer, prompts[0], requests[0], sampling, meta, body, None, headers)
        results = await _unless_gone(http, asyncio.gather(*(completer.acomplete(r, sampling) for r in requests)),
                                     requests)
    echoes = [(t if isinstance(t, str) else completer.core.decode(t)) if body.echo else "" for t in texts]
    choices, usage = _completion_choices(prompts, results,
                                         await completion_extras(completer.scoring, prompts, echoes, results, ask))
    return JSONResponse({**meta, "choices": choices, "usage": usage}, headers=headers)


def _check_prompts(completer: Completer, texts: list[str], stream: bool) -> None:
    if stream and len(texts) != 1:
        raise APIError(400, "stream=true takes one prompt, not a list.", param="prompt")
    if len(texts) > completer.core.max_queue:
        raise APIError(400, f"The request has {len(texts)} prompts; this server takes at most "
                       f"{completer.core.max_queue} at once (its --max-queue). Send the list in smaller parts.",
                       param="prompt", code="too_many_prompts")


def _completion_choices(prompts: list[Prompt], results: list[list[Output]],
                        extras: list[list[tuple[str, Any]]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The choices of every prompt, numbered in order, and their summed usage; ``extras``: per choice, the echoed
    prompt and the logprobs (``logprobs.completion_extras``)."""
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for prompt, outputs, extra in zip(prompts, results, extras):
        for output, (echo, logprobs) in zip(outputs, extra):
            choices.append({"index": len(choices), "text": echo + output.text, "logprobs": logprobs,
                            "finish_reason": output.finish_reason})
        usage = {k: usage[k] + v for k, v in _usage(prompt, outputs).items()}
    return choices, usage


async def complete_chat(completer: Completer, body: ChatRequest, http: Request, headers: dict[str, str]) -> Any:
    """``/v1/chat/completions``: the messages rendered by the chat template, answered whole or streamed."""
    adapter = completer.check_model(body.model)
    ask = _ask(body)
    if ask is not None:
        completer.scoring.check(adapter)
    use = tool_use(body.tools, body.tool_choice, body.parallel_tool_calls, body.response_format,
                   completer.tool_format)
    sampling = body.sampling(body.max_completion_tokens)
    if use is not None and use.response_format() is not None:
        sampling = replace(sampling, response_format=use.response_format())
    sampling = await run_in_threadpool(_prepare, completer, sampling, use)
    messages = chat_messages(body.messages, use, completer.native_tools)
    tools = use.tools if use is not None and completer.native_tools else None
    prompt = await run_in_threadpool(completer.encode_chat, messages, tools)
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": adapter or completer.name}
    request = _submit_all(completer, [prompt], sampling, None, adapter)[0]
    if body.stream:
        return await _stream(completer, prompt, request, sampling, {**meta, "object": "chat.completion.chunk"},
                             body, ChatDeltas(use), headers)
    outputs = await _unless_gone(http, completer.acomplete(request, sampling), [request])
    extras = (await completion_extras(completer.scoring, [prompt], [""], [outputs], ask))[0]
    choices = [_chat_choice(i, o, use, lp) for i, (o, (_, lp)) in enumerate(zip(outputs, extras))]
    return JSONResponse({**meta, "choices": choices, "usage": _usage(prompt, outputs)}, headers=headers)


def _prepare(completer: Completer, sampling: Sampling, use: ToolUse | None) -> Sampling:
    """``completer.prepare``; a tool constraint the engine cannot take is the tools' 400."""
    try:
        return completer.prepare(sampling)
    except APIError as exc:
        if use is None or exc.param != "response_format":
            raise
        raise APIError(exc.status, str(exc).replace("Invalid response_format", "Invalid tools"), param="tools",
                       code=exc.code) from None


def _chat_choice(index: int, output: Output, use: ToolUse | None, logprobs: Any) -> dict[str, Any]:
    message, calls = ({"role": "assistant", "content": output.text}, False) if use is None else use.message(output.text)
    return {"index": index, "message": message, "logprobs": logprobs,
            "finish_reason": finish_reason_of(output.finish_reason, calls)}


def _ask(body: _GenerationRequest) -> Ask | None:
    """The logprobs a request asks (``serving.logprobs``), or None."""
    if isinstance(body, ChatRequest):
        return chat_ask(body.logprobs, body.top_logprobs)
    if isinstance(body, CompletionRequest):
        return completion_ask(body.logprobs, body.echo, body.max_tokens, body.stream, body.n)
    return None


def _submit_all(completer: Completer, prompts: list[Prompt], sampling: Sampling,
                default_max: int | None, adapter: str | None = None) -> list[CoreRequest]:
    """Submit every prompt, or none: a refusal (bad settings, full queue) cancels those already submitted."""
    loop = asyncio.get_running_loop()
    requests: list[CoreRequest] = []
    try:
        for prompt in prompts:
            requests.append(completer.submit(prompt, sampling, default_max, loop, adapter))
    except BaseException:
        for request in requests:
            request.cancel()
        raise
    return requests


async def _unless_gone(http: Request, work: Awaitable[T], requests: list[CoreRequest]) -> T:
    """``work``'s result; if the client disconnects first, its requests are cancelled (the engine drops them at
    the next step, as it does a dropped stream's) and ``ClientGone`` is raised."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        for request in requests:
            request.cancel()
        task.cancel()
        task.add_done_callback(_retrieve)  # a cancelled gather holds a CancelledError asyncio would log
        raise ClientGone
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _disconnected(http: Request) -> None:
    """Return once the client has gone (the body was read already: the next message is the disconnect)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    """The client of a non-streaming request disconnected before its answer (nobody to answer)."""


def _validation_error(exc: RequestValidationError) -> APIError:
    error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if error.get("type") == "json_invalid":
        return APIError(400, f"The request body is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}.")
    names = [str(p) for p in error["loc"] if p != "body" and not isinstance(p, int)]
    if not names:
        return APIError(400, f"The request body must be a JSON object: {error['msg']}.")
    code = "missing_required_parameter" if error.get("type") == "missing" else "invalid_value"
    kinds = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
    names = [n for n in names if n not in kinds and not n.startswith(("function-", "list[", "constrained-"))] or names
    return APIError(400, f"Invalid value for {'.'.join(names)!r}: {error['msg']}.", param=names[0], code=code)


def _events(item: str | Output, chat: ChatDeltas | None, meta: dict[str, Any], body: _GenerationRequest,
            prompt: Prompt) -> list[str]:
    """The server-sent events of one streamed item: a text piece, or the end (its finish reason, usage)."""

    def choice(text: str | dict[str, Any] | None, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        if chat:
            return {"index": 0, "delta": text or {}, "logprobs": logprobs, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": logprobs, "finish_reason": finish}

    if isinstance(item, str):  # a piece's logprobs (``logprobs.Piece``) go with its first delta, or an empty one
        logprobs = getattr(item, "logprobs", None)
        deltas = chat.feed(item) if chat else [item]
        if logprobs is not None and not deltas:
            deltas = [{}]
        return [_sse({**meta, "choices": [choice(d, None, logprobs if i == 0 else None)]})
                for i, d in enumerate(deltas)]
    events = [_sse({**meta, "choices": [choice(d, None)]}) for d in (chat.finish() if chat else [])]
    events.append(_sse({**meta, "choices": [choice(None, chat.reason(item.finish_reason) if chat
                                                   else item.finish_reason)]}))
    if body.stream_options is not None and body.stream_options.include_usage:
        events.append(_sse({**meta, "choices": [], "usage": _usage(prompt, [item])}))
    return events


async def _stream(completer: Completer, prompt: Prompt, request: CoreRequest, sampling: Sampling,
                  meta: dict[str, Any], body: _GenerationRequest, chat: ChatDeltas | None,
                  headers: dict[str, str]) -> StreamingResponse:
    """Server-sent events: one chunk per text piece, one with the finish reason, optional usage, ``[DONE]``.
    ``chat``: how a chat stream's text becomes deltas (None: a completion's text chunks).

    The first piece is awaited before the status line, so a request the engine refuses gets its 4xx.
    """
    pieces = stream_pieces(completer.scoring, lambda r: completer.stream(r, sampling), request, prompt.ids, _ask(body))
    try:
        first = await anext(pieces)
    except BaseException:
        request.cancel()
        raise

    async def events() -> AsyncIterator[str]:
        if chat:
            yield _sse({**meta, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None}]})
        try:
            item: str | Output | None = first
            while item is not None:
                for event in _events(item, chat, meta, body, prompt):
                    yield event
                item = await anext(pieces, None)
        except Exception as exc:  # the status line is sent already: report in the stream, as OpenAI does
            error = exc if isinstance(exc, APIError) else APIError(500, "The server failed on this request.",
                                                                   kind="server_error")
            yield _sse(error.body())
        finally:
            request.cancel()
            await pieces.aclose()
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
