"""Tool calls in generated text: the formats models write them in, parsed into OpenAI's shapes, whole or streamed.

Formats (``FORMATS``), picked from the chat template by ``detect_format``:

- ``hermes`` (Hermes, Qwen 2.5/3, our fallback prompt): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
  one block per call, text around them;
- ``llama3_json`` (Llama 3.1/3.2): ``{"name": ..., "parameters": {...}}``, possibly after ``<|python_tag|>``,
  several separated by ``;``;
- ``llama3_pythonic`` (Llama 3.2/4 pythonic): ``[f(a=1), g(b="x")]`` (the JSON form above is read too);
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (or ``[TOOL_CALLS]name[ARGS]{...}``).

``ToolCallStream`` reads text as it is generated and yields OpenAI's streaming deltas: ``{"content": ...}`` for
text, and per call first ``{"tool_calls": [{"index", "id", "type", "function": {"name", "arguments": ""}}]}``
then its arguments. A call is sent once it is complete and parses, so a call that does not parse stays text and
tag text never reaches ``content`` in pieces. ``parse_tool_calls`` is the same parser fed the whole text.
openvino_genai's ``Llama3JsonToolParser``/``Llama3PythonicToolParser`` (2026.4.1) were tried and not used: the
pythonic one drops numeric arguments (``f(a=1, b="x")`` -> ``{"b": "x"}``), neither removes the call from the
content nor parses in pieces. Pure Python.
"""

from __future__ import annotations

import ast
import difflib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import OptionError

FORMATS = ("hermes", "llama3_json", "llama3_pythonic", "mistral")
_PYTHON_TAG, _PYTHON_START, _PYTHON_END, _MISTRAL_TAG = "<|python_tag|>", "<|python_start|>", "<|python_end|>", \
    "[TOOL_CALLS]"
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
Call = tuple[str, dict[str, Any]]


def check_format(name: str) -> str:
    """``name`` if it is a known format; OptionError listing the formats (and the closest) otherwise."""
    if name in FORMATS:
        return name
    close = difflib.get_close_matches(str(name), FORMATS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise OptionError(f"tool call format {name!r} is not known; use one of {', '.join(FORMATS)}.{hint}")


def detect_format(template: str | None) -> str:
    """The tool call format a chat template's model writes (``hermes`` when the template does not say)."""
    source = template or ""
    if HERMES_OPEN in source:
        return "hermes"
    if _MISTRAL_TAG in source:
        return "mistral"
    if _PYTHON_START in source:
        return "llama3_pythonic"
    if _PYTHON_TAG in source or "ipython" in source:
        return "llama3_json"
    return "hermes"


def parse_tool_calls(text: str, tools: Iterable[Mapping[str, Any]] | None = None,
                     format: str = "hermes") -> dict[str, Any]:
    """Split generated text into an assistant message: its content and OpenAI-shaped tool calls.

    Args:
        text: the model's output (``generated_text`` of a pipeline, a completion's text).
        tools: the tools offered (OpenAI's ``[{"type": "function", "function": {"name": ...}}]``); a call to a
            function not among them stays text. None: any name is accepted.
        format: ``"hermes"``, ``"llama3_json"``, ``"llama3_pythonic"`` or ``"mistral"`` (``FORMATS``).

    Returns:
        ``{"role": "assistant", "content": str | None, "tool_calls": [{"id", "type": "function",
        "function": {"name", "arguments": <JSON text>}}, ...]}``: content is None when the text held only
        calls; ``tool_calls`` is empty when it held none (content is then the text unchanged).

    Example:
        >>> message = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>')
        >>> (call,) = message["tool_calls"]
        >>> message["content"], call["function"]
        (None, {'name': 'f', 'arguments': '{"a": 1}'})
    """
    stream = ToolCallStream(format, tools)
    return assemble([*stream.feed(text), *stream.finish()])


def assemble(deltas: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The assistant message OpenAI's streaming deltas add up to (as clients put them together)."""
    content, calls = [], []
    for delta in deltas:
        content.append(delta.get("content") or "")
        for piece in delta.get("tool_calls") or ():
            if piece["index"] == len(calls):
                calls.append({"id": piece["id"], "type": "function", "function": {"name": "", "arguments": ""}})
            function = calls[piece["index"]]["function"]
            function["name"] += piece.get("function", {}).get("name") or ""
            function["arguments"] += piece.get("function", {}).get("arguments") or ""
    text = "".join(content)
    return {"role": "assistant", "content": None if calls and not text else text, "tool_calls": calls}


class ToolCallStream:
    """Generated text in, OpenAI ``delta`` dicts out (see the module's docstring).

    Args:
        format: one of ``FORMATS``.
        tools: the tools offered; a call naming another function stays text (None: any name).
    """

    def __init__(self, format: str = "hermes", tools: Iterable[Mapping[str, Any]] | None = None) -> None:
        self.format = check_format(format)
        self.names = None if tools is None else {tool_name(t) for t in tools}
        self.text, self.pos, self.calls = "", 0, 0
        self._space, self._after_call, self.wrote = "", False, False  # wrote: content sent (not a call)

    def feed(self, piece: str) -> list[dict[str, Any]]:
        """The deltas ``piece`` completes (text that may still open a call is held back)."""
        self.text += piece
        return self._deltas(final=False)

    def finish(self) -> list[dict[str, Any]]:
        """The deltas of the rest, at the end of generation."""
        deltas = self._deltas(final=True)
        if self._space and not self.calls:
            deltas.append({"content": self._space})
        self._space = ""
        return deltas

    def _deltas(self, final: bool) -> list[dict[str, Any]]:
        scan = _scan_tagged if self.format == "hermes" else _scan_tail
        segments, self.pos = scan(self, final)
        out: list[dict[str, Any]] = []
        for kind, value in segments:
            if kind == "call":
                out += self._call(*value)
            elif value:
                out += self._content(value)
        return out

    def _content(self, text: str) -> list[dict[str, Any]]:
        if self._after_call:
            text = text.lstrip()
        body = text.rstrip()
        if not body:
            self._space += text
            return []
        self._after_call = False
        lead, self._space = self._space, text[len(body):]
        self.wrote = True
        return [{"content": lead + body}]

    def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        index, self.calls = self.calls, self.calls + 1
        self._after_call = True  # the text after a call starts at its first word; spacing before the call stays
        if not self.wrote:
            self._space = ""
        head = {"index": index, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": name, "arguments": ""}}
        body = {"index": index, "function": {"arguments": json.dumps(arguments, ensure_ascii=False)}}
        return [{"tool_calls": [head]}, {"tool_calls": [body]}]

    def known(self, calls: list[Call] | None) -> list[Call] | None:
        """``calls`` if each names an offered tool, else None."""
        if calls is None or self.names is None or all(name in self.names for name, _ in calls):
            return calls
        return None


def tool_name(tool: Mapping[str, Any]) -> str:
    """The function name of an OpenAI tool spec (``{"type": "function", "function": {"name": ...}}``)."""
    function = tool.get("function") if isinstance(tool, Mapping) else None
    return str(function.get("name")) if isinstance(function, Mapping) else ""


def _held(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def _scan_tagged(stream: ToolCallStream, final: bool) -> tuple[list[tuple[str, Any]], int]:
    """Hermes: each call in its own ``<tool_call>...</tool_call>``; an unclosed one at the end is read too."""
    text, pos, out = stream.text, stream.pos, []
    while True:
        start = text.find(HERMES_OPEN, pos)
        if start < 0:
            end = len(text) - (0 if final else _held(text[pos:], HERMES_OPEN))
            out.append(("text", text[pos:end]))
            return out, max(end, pos)
        out.append(("text", text[pos:start]))
        close = text.find(HERMES_CLOSE, start)
        if close < 0 and not final:
            return out, start
        end = len(text) if close < 0 else close + len(HERMES_CLOSE)
        calls = stream.known(_json_calls(text[start + len(HERMES_OPEN):end - (0 if close < 0 else len(HERMES_CLOSE))],
                                         ("arguments", "parameters")))
        out += [("call", c) for c in calls] if calls and len(calls) == 1 else [("text", text[start:end])]
        pos = end


_TAIL = {  # format -> (markers that open the calls, what the calls may start with at the start of the message)
    "llama3_json": ((_PYTHON_TAG,), ("{",)),
    "llama3_pythonic": ((_PYTHON_START,), ("[", "{")),
    "mistral": ((_MISTRAL_TAG,), ("[",)),
}


def _scan_tail(stream: ToolCallStream, final: bool) -> tuple[list[tuple[str, Any]], int]:
    """Llama 3 and Mistral: the calls run from a marker (or from the message's start) to the end."""
    text, pos = stream.text, stream.pos
    markers, starts = _TAIL[stream.format]
    region = None
    if not stream.wrote and not text[:pos].strip():
        rest = text[pos:].lstrip()
        if not rest and not final:
            return [], pos
        if rest.startswith(starts):
            region = pos
    found = [i for i in (text.find(m, pos) for m in markers) if i >= 0]
    if region is None and found:
        region = min(found)
    if region is None:
        end = len(text) - (0 if final else max(_held(text[pos:], m) for m in markers))
        return [("text", text[pos:end])], max(end, pos)
    if not final:
        return [("text", text[pos:region])], region
    calls = stream.known(_tail_calls(stream.format, text[region:]))
    if not calls:
        return [("text", text[pos:])], len(text)
    return [("text", text[pos:region]), *(("call", c) for c in calls)], len(text)


def _tail_calls(format: str, body: str) -> list[Call] | None:
    body = body.strip()
    for marker in (_PYTHON_TAG, _PYTHON_START, _MISTRAL_TAG):
        body = body.removeprefix(marker).strip()
    body = body.removesuffix(_PYTHON_END).strip()
    if format == "mistral":
        return _json_calls(body, ("arguments",)) or _mistral_named(body)
    if format == "llama3_pythonic" and body.startswith("["):
        return _pythonic_calls(body)
    return _json_calls(body, ("parameters", "arguments"))


def _json_calls(body: str, keys: tuple[str, ...]) -> list[Call] | None:
    """Calls written as JSON objects (one, a list, or several separated by ``;``); None unless all parse."""
    decoder, calls, pos, body = json.JSONDecoder(), [], 0, body.strip()
    while pos < len(body):
        try:
            value, pos = decoder.raw_decode(body, pos)
        except ValueError:
            return None
        for item in value if isinstance(value, list) else [value]:
            call = _json_call(item, keys)
            if call is None:
                return None
            calls.append(call)
        while pos < len(body) and body[pos] in " \t\r\n;,":
            pos += 1
    return calls or None


def _json_call(item: Any, keys: tuple[str, ...]) -> Call | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        return None
    arguments = next((item[k] for k in keys if k in item), {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return (item["name"], arguments) if isinstance(arguments, dict) else None


def _mistral_named(body: str) -> list[Call] | None:
    """Mistral's newer form: ``name[ARGS]{...}``, calls separated by ``[TOOL_CALLS]``."""
    calls = []
    for part in (p.strip() for p in body.split(_MISTRAL_TAG) if p.strip()):
        name, sep, arguments = part.partition("[ARGS]")
        call = _json_call({"name": name.strip(), "arguments": arguments}, ("arguments",)) if sep else None
        if call is None:
            return None
        calls.append(call)
    return calls or None


_PY_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _pythonic_calls(body: str) -> list[Call] | None:
    """``[f(a=1), g(b="x")]``: keyword arguments with literal values only."""
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call) or node.args or not isinstance(node.func, (ast.Name, ast.Attribute)):
            return None
        try:
            arguments = {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
        except ValueError:
            return None
        if len(arguments) != len(node.keywords):
            return None
        calls.append((ast.unparse(node.func), arguments))
    return calls


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in _PY_NAMES:
        return _PY_NAMES[node.id]
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    return ast.literal_eval(node)
