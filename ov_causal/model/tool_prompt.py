"""Tools in the prompt and in the grammar: checking tool specs, the fallback prompt for chat templates without
tools, and the constraints that make calls valid by construction.

- ``check_parameters``: a tool's ``parameters`` must be a JSON Schema (the ``jsonschema`` metaschema when that
  package is installed, else a minimal check).
- ``fallback_messages``: a chat template that never mentions ``tools`` (SmolLM2's, the demo model's) gets the
  tools as a system-prompt block asking for Hermes calls (``<tool_call>{...}</tool_call>``); earlier calls are
  written back as such blocks and tool results as ``<tool_response>`` user turns, the way Qwen's template
  writes them.
- ``tool_constraint``: ``StructuredOutputConfig`` keywords for a tool choice. ``"required"`` or a named
  function: a regex of exactly the call(s), each call's arguments compiled from its schema with the bounds of
  ``model.json_bounds`` (as ``response_format`` is). ``"auto"``: a structural tag (xgrammar's JSON, which GenAI
  takes as ``structural_tags_config``) that lets the model write freely until it opens a call, then constrains
  the call. Pure Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StructuredOutputError
from .json_bounds import WHITESPACE
from .structured import schema_regex
from .tool_calls import HERMES_CLOSE, HERMES_OPEN, tool_name

MAX_PARALLEL_CALLS = 4  # calls one answer may hold under "required" with parallel_tool_calls
_NO_ARGUMENTS = f"\\{{{WHITESPACE}\\}}"
_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
# format -> (the call's JSON up to its arguments, the key of the arguments, between calls, around all calls)
_SHAPES = {
    "hermes": ('{{"name": "{name}", "arguments": ', "\n", ("", "")),
    "llama3_json": ('{{"name": "{name}", "parameters": ', "; ", ("", "")),
    "llama3_pythonic": ('{{"name": "{name}", "parameters": ', "; ", ("", "")),
    "mistral": ('{{"name": "{name}", "arguments": ', ", ", ("[", "]")),
}
FALLBACK_PROMPT = (
    "You may call one or more functions to help with the user's request. The functions are listed as JSON "
    "schemas in <tools></tools>:\n<tools>\n{tools}\n</tools>\n\nTo call a function, answer with its name and "
    "arguments as JSON inside <tool_call></tool_call> tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def check_parameters(schema: Any) -> None:
    """StructuredOutputError unless ``schema`` is a JSON Schema object (checked against its metaschema)."""
    if not isinstance(schema, Mapping):
        raise StructuredOutputError(f"is {schema!r}: a function's parameters must be a JSON Schema object")
    try:
        import jsonschema
    except ImportError:
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if kind is not None and not all(k in _JSON_TYPES for k in kinds):
            raise StructuredOutputError(f"has type {kind!r}; JSON Schema types are {sorted(_JSON_TYPES)}") from None
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise StructuredOutputError(f"is not a valid JSON Schema: {exc.message}"
                                    + (f" (at {where})" if where else "")) from None


def native(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` itself (it refers to the variable)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


def fallback_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
                      ) -> list[dict[str, Any]]:
    """``messages`` for a template that knows nothing of tools: the tools in the system prompt (when given),
    assistant calls as ``<tool_call>`` blocks, tool results as ``<tool_response>`` blocks in user turns."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
            continue
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            blocks = [f"{HERMES_OPEN}\n{_call_json(c)}\n{HERMES_CLOSE}" for c in calls]
            content = "\n".join(([content] if content else []) + blocks)
        out.append({k: v for k, v in message.items() if k != "tool_calls"} | {"content": content})
    for message in out:
        message.pop("tool_results", None)
    if tools:
        block = FALLBACK_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _call_json(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    return json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)


TOOLS_FORMAT = "ov_causal.tools"  # the type of a tool choice sent where a response_format goes (the grammar check)


def tools_format(tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any], parallel: bool,
                 format: str) -> dict[str, Any] | None:
    """A tool choice as a format the server's grammar check compiles (``constraint_of``); None for no constraint."""
    if choice == "none" or not tools:
        return None
    return {"type": TOOLS_FORMAT, "tools": list(tools), "choice": choice, "parallel": parallel, "format": format}


def constraint_of(spec: Mapping[str, Any]) -> dict[str, str] | None:
    """The ``StructuredOutputConfig`` keywords of a ``tools_format``."""
    return tool_constraint(spec["tools"], spec["choice"], spec["parallel"], spec["format"])


def tool_constraint(tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any], parallel: bool = True,
                    format: str = "hermes") -> dict[str, str] | None:
    """``StructuredOutputConfig`` keywords for ``tool_choice`` over ``tools`` (None for ``"none"``).

    Raises:
        StructuredOutputError: a tool's parameters cannot be compiled (names the tool).
    """
    if choice == "none" or not tools:
        return None
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if tool_name(t) == wanted]
    prefix, between, (first, last) = _SHAPES[format]
    arguments = {tool_name(t): _arguments(t) for t in tools}
    if choice == "auto":
        return {"structural_tags_config": json.dumps(_triggered(arguments, prefix, between, format, parallel))}
    calls = [_call_regex(prefix, name, args, format) for name, args in arguments.items()]
    one = "|".join(f"(?:{c})" for c in calls)
    more = f"(?:{_escape(between)}(?:{one})){{0,{MAX_PARALLEL_CALLS - 1}}}" if parallel else ""
    return {"regex": f"{_escape(first)}(?:{one}){more}{_escape(last)}"}


def _call_regex(prefix: str, name: str, arguments: str, format: str) -> str:
    call = f"{_escape(prefix.format(name=name))}(?:{arguments})\\}}"
    return f"{_escape(HERMES_OPEN)}\\n{call}\\n{_escape(HERMES_CLOSE)}" if format == "hermes" else call


def _escape(text: str) -> str:
    """``text`` as a regex matching itself (spaces and newlines left as they are: xgrammar reads them plainly)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text).replace("\n", "\\n")


def _arguments(tool: Mapping[str, Any]) -> str:
    parameters = (tool.get("function") or {}).get("parameters")
    if parameters is None:
        return _NO_ARGUMENTS
    return schema_regex(parameters, tool_name(tool))


def _triggered(arguments: Mapping[str, str], prefix: str, between: str, format: str,
               parallel: bool) -> dict[str, Any]:
    """xgrammar's structural tag: free text; a call's opening switches the constraint on for that call."""
    if format == "mistral":
        one = "|".join(f"(?:{_call_regex(prefix, n, a, format)})" for n, a in arguments.items())
        trigger, tags = "[TOOL_CALLS]", [_tag("[TOOL_CALLS]", f"\\[(?:{one})(?:{_escape(between)}(?:{one}))*\\]", "")]
    else:  # the tag of each function starts with its name; Hermes' trigger is its tag, Llama 3's the call's start
        opening = f"{HERMES_OPEN}\n" if format == "hermes" else ""
        closing = f"}}\n{HERMES_CLOSE}" if format == "hermes" else "}"
        trigger = HERMES_OPEN if format == "hermes" else prefix.split('"{name}"')[0].replace("{{", "{")
        tags = [_tag(opening + prefix.format(name=n), a, closing) for n, a in arguments.items()]
    return {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": [trigger], "tags": tags,
                                                 "at_least_one": False, "stop_after_first": not parallel}}


def _tag(begin: str, pattern: str, end: str) -> dict[str, Any]:
    return {"type": "tag", "begin": begin, "content": {"type": "regex", "pattern": pattern}, "end": end}
