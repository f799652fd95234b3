"""OpenAI's ``response_format`` as an ``openvino_genai.StructuredOutputConfig``, every value bounded.

GenAI's own ``StructuredOutputConfig(json_schema=...)`` lets whitespace between tokens run free, and
a model that never learned JSON fills it (the shipped demo model answered ``{"ok"`` and 90
newlines); numbers, strings and arrays run free too (SmolLM2 wrote ``"population": 1111111…`` until
``max_tokens``). Here a JSON schema gets the default bounds of ``model.json_bounds`` written in and is
compiled to a regex by ``outlines-core`` with at most one space wherever JSON allows whitespace (as
llama.cpp's grammars bound it); ``{"type": "json_object"}`` is an EBNF grammar of any bounded JSON object.
Both ``generate()`` and the server build their constraint here. Nothing here imports torch;
openvino_genai is imported only to build the config object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..errors import StructuredOutputError
from .json_bounds import MAX_DEPTH, WHITESPACE, BoundedSchema, json_object_grammar

FORMATS = ("text", "json_object", "json_schema")
_SCHEMA_KEYS = {"name", "schema", "strict", "description"}
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _fail(what: str) -> StructuredOutputError:
    return StructuredOutputError(
        f"response_format {what}. Use {{'type': 'text'}}, {{'type': 'json_object'}} or "
        "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}."
    )


def _check_json_schema(spec: Any) -> Mapping[str, Any]:
    """The ``json_schema`` member of a response_format, checked as OpenAI checks it; returns the schema."""
    if not isinstance(spec, Mapping):
        raise _fail(f"has 'json_schema' = {spec!r}: it must be an object with 'name' and 'schema'")
    unknown = sorted(set(spec) - _SCHEMA_KEYS)
    if unknown:
        raise _fail(f"has unknown json_schema keys {unknown} (allowed: {sorted(_SCHEMA_KEYS)})")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(f"has json_schema.name = {name!r}: give 1-64 letters, digits, '_' or '-'")
    if "strict" in spec and not isinstance(spec["strict"], (bool, type(None))):
        raise _fail(f"has json_schema.strict = {spec['strict']!r}: it must be true or false")
    if "description" in spec and not isinstance(spec["description"], str):
        raise _fail(f"has json_schema.description = {spec['description']!r}: it must be a string")
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        raise _fail(f"has json_schema.schema = {schema!r}: it must be a JSON schema object")
    return schema


def _xgrammar_safe(regex: str) -> str:
    """outlines excludes C1 controls (U+0080-U+009F) from strings; xgrammar's negated classes stop at
    U+007F and warn on every compile, so drop the part it would clamp away anyway."""
    return regex.replace(r"\x7F-\x9F", r"\x7F")


def schema_regex(schema: Mapping[str, Any], name: str = "schema") -> str:
    """Compile a JSON schema to a regex whose whitespace is ``WHITESPACE``.

    Raises:
        StructuredOutputError: the schema cannot be compiled (says why).
    """
    try:
        text = json.dumps(schema, allow_nan=False)  # key order kept: it is the order properties are written in
    except (TypeError, ValueError) as exc:
        raise StructuredOutputError(f"JSON schema {name!r} is not JSON-serialisable: {exc}.") from None
    regex, problem = _compile(text)
    if problem:
        raise StructuredOutputError(f"JSON schema {name!r} {problem}") from None
    return regex


@lru_cache(maxsize=256)
def _compile(schema_json: str) -> tuple[str, str]:
    """(regex, '') or ('', why it failed) for a schema's JSON text; cached: a server sees the same schemas."""
    try:
        regex = _bounded_regex(json.loads(schema_json))
    except StructuredOutputError as exc:
        return "", str(exc)
    except (TypeError, ValueError) as exc:
        return "", (
            f"cannot be compiled for constrained generation: {exc}. Simplify the schema (supported: types, "
            "properties, required, items, enum, const, anyOf/oneOf/allOf, $ref, minLength/maxLength, "
            "minItems/maxItems, minimum/maximum, pattern, format)."
        )
    try:
        re.compile(regex)
    except re.error as exc:  # a 'pattern' keyword that is not a valid regex is copied in verbatim
        return "", f"compiles to an invalid regex ({exc}); check its 'pattern' keywords."
    return regex, ""


def _bounded_regex(schema: Any) -> str:
    """The regex of a schema with the default bounds of ``json_bounds`` written in."""
    from outlines_core.json_schema import build_regex_from_schema

    bounded = BoundedSchema(schema, _bounded_regex)
    return bounded.fill(_xgrammar_safe(build_regex_from_schema(json.dumps(bounded.schema), WHITESPACE, MAX_DEPTH)))


def constraint(response_format: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The ``StructuredOutputConfig`` keywords for a response_format: ``{'regex': ...}``,
    ``{'grammar': ...}``, or None for plain text. Pure Python (no openvino_genai import)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise _fail(f"= {response_format!r} is not an object")
    kind = response_format.get("type")
    if kind not in FORMATS:
        raise _fail(f"has type {kind!r}; allowed types: {', '.join(FORMATS)}")
    allowed = {"type", "json_schema"} if kind == "json_schema" else {"type"}
    unknown = sorted(set(response_format) - allowed)
    if unknown:
        raise _fail(f"of type {kind!r} has unknown keys {unknown}")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"grammar": json_object_grammar()}
    spec = response_format.get("json_schema")
    schema = _check_json_schema(spec)
    return {"regex": schema_regex(schema, spec["name"])}


def structured_output_config(response_format: Mapping[str, Any] | None) -> Any:
    """An ``openvino_genai.StructuredOutputConfig`` for OpenAI's ``response_format``, or None for plain text.

    Args:
        response_format: ``{"type": "text"}``, ``{"type": "json_object"}`` (any JSON object) or
            ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}``
            (output that validates against the schema; ``strict`` is accepted, the output is always
            constrained).

    Raises:
        StructuredOutputError: a malformed response_format or a schema that cannot be compiled.

    Example:
        >>> config = openvino_genai.GenerationConfig(max_new_tokens=100)
        >>> config.structured_output_config = structured_output_config({"type": "json_object"})
    """
    keywords = constraint(response_format)
    if keywords is None:
        return None
    import openvino_genai

    return openvino_genai.StructuredOutputConfig(**keywords)


@lru_cache(maxsize=256)
def shortest_output(keywords: tuple[tuple[str, str], ...]) -> str:
    """The shortest text a constraint allows (``tuple(sorted(constraint(...).items()))``): what ``max_tokens``
    must at least hold. ``{}`` for the json_object grammar."""
    kind, source = dict(keywords).get("regex"), dict(keywords).get("grammar")
    if kind is None:
        return "{}" if source is not None else ""
    from re import _parser  # the same parser that checked the regex in ``_compile``

    return _shortest(_parser.parse(kind))


def _shortest(items: Any) -> str:
    from re import _constants as c

    out = []
    for op, arg in items:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op in (c.IN, c.ANY, c.CATEGORY):
            out.append(_member(arg if op is c.IN else [(op, arg)]))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            out.append(_shortest(arg[2]) * arg[0])
        elif op is c.SUBPATTERN or op is getattr(c, "ATOMIC_GROUP", None):
            out.append(_shortest(arg[-1]))
        elif op is c.BRANCH:
            out.append(min((_shortest(branch) for branch in arg[1]), key=len))
    return "".join(out)  # anchors and assertions write nothing


def _member(items: list[Any]) -> str:
    """One character of a character set (the first printable one)."""
    from re import _constants as c

    pattern = "[" + "".join(_set_part(op, arg, c) for op, arg in items) + "]"
    return next((ch for ch in map(chr, range(32, 0x3000)) if re.fullmatch(pattern, ch)), "a")


def _set_part(op: Any, arg: Any, c: Any) -> str:
    if op is c.NEGATE:
        return "^"
    if op is c.LITERAL:
        return re.escape(chr(arg))
    if op is c.RANGE:
        return f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}"
    if op is c.ANY:
        return "^\n"
    categories = {c.CATEGORY_DIGIT: r"\d", c.CATEGORY_NOT_DIGIT: r"\D", c.CATEGORY_SPACE: r"\s",
                  c.CATEGORY_NOT_SPACE: r"\S", c.CATEGORY_WORD: r"\w", c.CATEGORY_NOT_WORD: r"\W"}
    return categories.get(arg, "")
