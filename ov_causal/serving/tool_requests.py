"""Tools on ``/v1/chat/completions``: the request fields (``tools``, ``tool_choice``, ``parallel_tool_calls``, and
messages with ``tool_calls`` or ``role: "tool"``) checked into a ``ToolUse``, the messages the chat template
renders, and the answer's tool calls in OpenAI's shapes.

A template that renders ``tools`` gets them as ``apply_chat_template(tools=...)`` passes them, history included
(an assistant's ``tool_calls`` with their arguments as objects, tool results as ``role: "tool"``); any other
template gets the fallback of ``model.tool_prompt`` (a system-prompt block, Hermes calls). Under ``"required"``
or a named function the output is constrained to the call(s); under ``"auto"`` a call is constrained once the
model opens it; under ``"none"`` the tools reach the template only and nothing is parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import APIError, StructuredOutputError
from ..model.structured import schema_regex
from ..model.tool_calls import ToolCallStream, parse_tool_calls, tool_name
from ..model.tool_prompt import check_parameters, fallback_messages, tools_format


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionSpec(_Body):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class FunctionCall(_Body):
    name: str
    arguments: str


class ToolCall(_Body):
    id: str
    type: Literal["function"]
    function: FunctionCall


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


@dataclass(frozen=True)
class ToolUse:
    """The tools of one chat request, checked: what the prompt shows, how output is constrained and read."""

    tools: list[dict[str, Any]]
    choice: str | dict[str, Any]
    parallel: bool
    format: str

    @property
    def parses(self) -> bool:
        return self.choice != "none"

    def response_format(self) -> dict[str, Any] | None:
        """What the grammar check compiles (None: no constraint)."""
        return tools_format(self.tools, self.choice, self.parallel, self.format)

    def stream(self) -> ToolCallStream:
        return ToolCallStream(self.format, self.tools)

    def message(self, text: str) -> tuple[dict[str, Any], bool]:
        """The assistant message of a generated text, and whether it holds calls."""
        if not self.parses:
            return {"role": "assistant", "content": text}, False
        parsed = parse_tool_calls(text, self.tools, self.format)
        if not parsed["tool_calls"]:
            return {"role": "assistant", "content": text}, False
        return parsed, True


class ChatDeltas:
    """A streamed chat answer's text as OpenAI deltas: content only, or content and tool calls when parsed."""

    def __init__(self, use: ToolUse | None) -> None:
        self.calls = use.stream() if use is not None and use.parses else None

    def feed(self, text: str) -> list[dict[str, Any]]:
        return [{"content": text}] if self.calls is None else self.calls.feed(text)

    def finish(self) -> list[dict[str, Any]]:
        return [] if self.calls is None else self.calls.finish()

    def reason(self, finish_reason: str) -> str:
        return finish_reason_of(finish_reason, self.calls is not None and bool(self.calls.calls))


def finish_reason_of(engine_reason: str, calls: bool) -> str:
    """OpenAI's finish reason: "tool_calls" when an answer that ended by itself holds calls; a cut answer stays
    "length" (its last call may be cut off and left in ``content``)."""
    return "tool_calls" if calls and engine_reason == "stop" else engine_reason


def tool_use(tools: list[Tool] | None, choice: ToolChoice | None, parallel: bool | None, response_format: Any,
             format: str) -> ToolUse | None:
    """The request's tools checked (None without tools); APIError(400) naming the field that is wrong."""
    if not tools:
        if choice is not None and choice != "none":
            raise APIError(400, "tool_choice is only allowed when tools are given.", param="tool_choice")
        return None
    specs = [t.model_dump(exclude_none=True) for t in tools]
    for i, tool in enumerate(tools):
        _check_tool(i, tool, [t.function.name for t in tools[:i]])
    picked = choice.model_dump() if isinstance(choice, NamedToolChoice) else (choice or "auto")
    if isinstance(picked, dict) and picked["function"]["name"] not in {tool_name(s) for s in specs}:
        raise APIError(400, f"tool_choice names the function {picked['function']['name']!r}, which is not among "
                       f"the tools ({', '.join(repr(tool_name(s)) for s in specs)}).", param="tool_choice")
    if picked != "none" and response_format is not None and response_format.type != "text":
        raise APIError(400, "response_format and tools cannot constrain one answer together: send tool_choice "
                       "'none', or leave response_format out.", param="response_format")
    return ToolUse(specs, picked, True if parallel is None else parallel, format)


def _check_tool(i: int, tool: Tool, earlier: list[str]) -> None:
    where = f"tools[{i}].function"
    if tool.function.name in earlier:
        raise APIError(400, f"{where}.name {tool.function.name!r} is given twice; each tool needs its own name.",
                       param=f"{where}.name")
    if tool.function.parameters is None:
        return
    try:
        check_parameters(tool.function.parameters)
        schema_regex(tool.function.parameters, tool.function.name)  # what the constraint compiles
    except StructuredOutputError as exc:
        raise APIError(400, f"Invalid schema for function {tool.function.name!r}: {where}.parameters "
                       f"{str(exc).removeprefix(f'JSON schema {tool.function.name!r} ')}",
                       param=f"{where}.parameters", code="invalid_function_parameters") from None


def chat_messages(messages: list[Any], use: ToolUse | None, native: bool) -> list[dict[str, Any]]:
    """The messages as the chat template takes them; APIError(400) for a tool result answering no call."""
    out, calls = [], {}
    for i, message in enumerate(messages):
        plain = message.plain()
        if message.role == "assistant" and message.tool_calls:
            calls.update({c.id: c.function.name for c in message.tool_calls})
            plain["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": _arguments(c.function.arguments)}} for c in message.tool_calls]
        elif message.role == "tool":
            if message.tool_call_id not in calls:
                raise APIError(400, f"messages[{i}] is a tool result for tool_call_id {message.tool_call_id!r}, "
                               "which no earlier assistant message's tool_calls has.",
                               param=f"messages[{i}].tool_call_id")
            plain.update(tool_call_id=message.tool_call_id, name=calls[message.tool_call_id])
        elif message.content is None:
            raise APIError(400, f"messages[{i}] ({message.role}) has no content.", param=f"messages[{i}].content",
                           code="missing_required_parameter")
        out.append(plain)
    if native or (use is None and not calls):
        return out
    return fallback_messages(out, use.tools if use is not None and use.parses else None)


def _arguments(text: str) -> Any:
    """A call's arguments as an object (as templates and transformers take them), or the text if not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text
