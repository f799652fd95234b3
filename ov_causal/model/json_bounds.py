"""Default bounds on JSON values, so that constrained output ends: regexes for numbers in a range, any value and
free-form objects; a JSON schema with the bounds written in; the bounded grammar of ``json_object``.

A model that never learned when to stop writes ``"population": 1111111…`` until ``max_tokens`` if the grammar
lets a number run on. So the values a ``response_format`` allows are finite by default, as whitespace already
is (at most one space):

- integers: at most ``MAX_INTEGER_DIGITS`` digits;
- numbers: at most ``MAX_INTEGER_DIGITS`` digits before the point, ``MAX_FRACTION_DIGITS`` after it and
  ``MAX_EXPONENT_DIGITS`` in the exponent;
- arrays: at most ``MAX_ITEMS`` items (``maxItems``);
- free-form objects (no ``properties``): at most ``MAX_PROPERTIES`` members; values of no given schema (``{}``,
  ``true``, a free-form object's) nest objects/arrays at most ``MAX_DEPTH - 1`` deep;
- ``{"type": "json_object"}``: all of the above, objects nested at most ``MAX_DEPTH`` deep, and strings of at
  most ``MAX_STRING_LENGTH`` characters.

A schema's own ``maxLength``, ``maxItems``, ``minimum``/``maximum`` (and ``exclusiveMinimum``/``exclusiveMaximum``)
replace a default, larger or smaller, and are honoured exactly: a number or integer with a bound is written
without an exponent, with at most ``MAX_FRACTION_DIGITS`` decimals, and lies in the range. A schema's strings
get no default ``maxLength``: the engine's grammar compiler (xgrammar inside GenAI 2026.4.1) spends about 25 ms
per character of the bound on every string in the regex (measured: 5 s for one ``maxLength: 128`` field), where
bounded numbers and arrays cost nothing measurable. Pure Python.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from ..errors import StructuredOutputError

WHITESPACE = r"[ ]?"  # at most one space wherever JSON allows whitespace
MAX_INTEGER_DIGITS = 15  # every such integer is exact in a double (and in JavaScript)
MAX_FRACTION_DIGITS = 6
MAX_EXPONENT_DIGITS = 3
MAX_STRING_LENGTH = 256
MAX_ITEMS = 16
MAX_PROPERTIES = 16
MAX_DEPTH = 3  # objects/arrays nested in a free-form value; also how deep a recursive $ref is unrolled

_CHAR = r'(?:[^"\\\x00-\x1F\x7F]|\\["\\/bfnrt])'  # a string's character, as outlines-core writes it
_DIGITS = f"(?:0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})"
INTEGER = f"-?{_DIGITS}"
NUMBER = f"-?{_DIGITS}(?:\\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?(?:[eE][+-]?[0-9]{{1,{MAX_EXPONENT_DIGITS}}})?"
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "$id", "$schema", "$anchor",
                "deprecated", "readOnly", "writeOnly", "$defs", "definitions"}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_NOT_SCHEMAS = ("enum", "const", "default", "examples", "required")


def string(max_length: int | None = None) -> str:
    """A JSON string (outlines-core's characters), of at most ``max_length`` characters if given."""
    return f'"{_CHAR}*"' if max_length is None else f'"{_CHAR}{{0,{max_length}}}"'


def array(item: str, max_items: int = MAX_ITEMS) -> str:
    ws = WHITESPACE
    return f"\\[{ws}(?:(?:{item})(?:{ws},{ws}(?:{item})){{0,{max_items - 1}}})?{ws}\\]"


def free_object(value: str, max_properties: int = MAX_PROPERTIES) -> str:
    """Any object whose values match ``value``."""
    ws = WHITESPACE
    member = f"{string()}{ws}:{ws}(?:{value})"
    return f"\\{{{ws}(?:{member}(?:{ws},{ws}{member}){{0,{max_properties - 1}}})?{ws}\\}}"


def any_value(depth: int = MAX_DEPTH - 1) -> str:
    """Any JSON value with objects and arrays nested at most ``depth`` deep (a schema's untyped value)."""
    alternatives = [string(), NUMBER, "true", "false", "null"]
    if depth > 0:
        inner = any_value(depth - 1)
        alternatives += [free_object(inner), array(inner)]
    return "|".join(f"(?:{a})" for a in alternatives)


def json_object_grammar() -> str:
    """``{"type": "json_object"}`` as xgrammar EBNF: any object, every part bounded.

    EBNF rather than a regex: a rule is compiled once however often it is used. The engine's grammar compiler
    (GenAI 2026.4.1) spends time on every position of a bounded repetition, so a string of at most 256
    characters is written as up to 15 blocks of 16 characters and a tail (a shared rule of 16 positions) rather
    than 256 positions in each place a string may stand: measured 0.4 s for this grammar against minutes for
    the same bounds as one regex.
    """
    block = 16
    rules = [f"root ::= object{MAX_DEPTH}"]
    for depth in range(MAX_DEPTH, 0, -1):
        inner = f"value{depth - 1}" if depth > 1 else "scalar"
        rules += [
            f'object{depth} ::= "{{" ws ( member{depth} ( ws "," ws member{depth} ){{0,{MAX_PROPERTIES - 1}}} )? '
            'ws "}"',
            f'member{depth} ::= string ws ":" ws {inner}',
        ]
        if depth < MAX_DEPTH:  # the root is an object
            rules += [f'array{depth} ::= "[" ws ( {inner} ( ws "," ws {inner} ){{0,{MAX_ITEMS - 1}}} )? ws "]"',
                      f"value{depth} ::= object{depth} | array{depth} | scalar"]
    rules += [
        'scalar ::= string | number | "true" | "false" | "null"',
        f'string ::= "\\"" block{{0,{MAX_STRING_LENGTH // block - 1}}} char{{0,{block}}} "\\""',
        f"block ::= char{{{block}}}",
        r'char ::= [^"\\\x00-\x1f\x7f] | "\\" ["\\/bfnrt]',
        f'number ::= "-"? ( "0" | [1-9] [0-9]{{0,{MAX_INTEGER_DIGITS - 1}}} ) '
        f'( "." [0-9]{{1,{MAX_FRACTION_DIGITS}}} )? ( [eE] [+-]? [0-9]{{1,{MAX_EXPONENT_DIGITS}}} )?',
        f'ws ::= "{WHITESPACE[1]}"?',
    ]
    return "\n".join(rules) + "\n"


# --- numbers in a range -------------------------------------------------------------------------------------


def number(node: Mapping[str, Any], integer: bool) -> str:
    """The regex of an ``integer`` / ``number`` schema: the defaults, or exactly its minimum/maximum range."""
    low, high = _bound(node, "minimum", "exclusiveMinimum", max), _bound(node, "maximum", "exclusiveMaximum", min)
    if low is None and high is None:
        return INTEGER if integer else NUMBER
    digits = 0 if integer else MAX_FRACTION_DIGITS
    low = None if low is None else _snap(*low, digits, ROUND_CEILING)
    high = None if high is None else _snap(*high, digits, ROUND_FLOOR)
    step = Decimal(1).scaleb(-digits)
    width = max([MAX_INTEGER_DIGITS] + [len(str(int(abs(b)))) for b in (low, high) if b is not None])
    widest = Decimal(10) ** width - step
    low, high = -widest if low is None else low, widest if high is None else high
    if low > high:
        kind = "integer" if integer else f"number with at most {digits} decimals"
        raise StructuredOutputError(f"has {_range_text(node)}: no {kind} lies in that range. Check its bounds.")
    return decimal_range(low, high, digits)


def _bound(node: Mapping[str, Any], inclusive: str, exclusive: str, tighter: Callable[..., Any]
           ) -> tuple[Decimal, bool] | None:
    """(value, exclusive) of the tighter of a schema's inclusive and exclusive bound on one side, or None."""
    found = []
    for key in (inclusive, exclusive):
        value = node.get(key)
        if value is None or (key == exclusive and isinstance(value, bool)):  # draft 4's boolean form: below
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StructuredOutputError(f"has {key} = {value!r}: it must be a number.")
        found.append((Decimal(str(value)), key == exclusive or node.get(exclusive) is True))
    if not found:
        return None
    best = tighter(v for v, _ in found)
    return best, any(e for v, e in found if v == best)


def _snap(value: Decimal, exclusive: bool, digits: int, rounding: str) -> Decimal:
    """The nearest number with ``digits`` decimals inside the bound (rounding towards the range)."""
    snapped = value.quantize(Decimal(1).scaleb(-digits), rounding=rounding)
    if exclusive and snapped == value:
        snapped += Decimal(1).scaleb(-digits) * (1 if rounding == ROUND_CEILING else -1)
    return snapped


def _range_text(node: Mapping[str, Any]) -> str:
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    return ", ".join(f"{k}={node[k]!r}" for k in keys if k in node)


def decimal_range(low: Decimal, high: Decimal, digits: int) -> str:
    """A regex for the JSON numbers in [low, high] written with at most ``digits`` decimals (none when 0).

    ``low`` and ``high`` are multiples of 10**-digits. A range across zero also allows "-0".
    """
    parts = []
    if low < 0:
        parts.append("-(?:" + _non_negative(max(-high, Decimal(0)), -low, digits) + ")")
    if high >= 0:
        parts.append(_non_negative(max(low, Decimal(0)), high, digits))
    return "|".join(f"(?:{p})" for p in parts)


def _non_negative(low: Decimal, high: Decimal, digits: int) -> str:
    whole_low, whole_high = int(low), int(high)
    frac_low, frac_high = _fraction_digits(low, digits), _fraction_digits(high, digits)
    zeros, nines = "0" * digits, "9" * digits
    if whole_low == whole_high:
        return f"{whole_low}{_fraction(frac_low, frac_high)}"
    parts = []
    first, last = whole_low, whole_high  # the whole numbers that take any fraction
    if set(frac_low) - {"0"}:
        parts.append(f"{whole_low}{_fraction(frac_low, nines)}")
        first += 1
    if set(frac_high) - {"9"}:
        parts.append(f"{whole_high}{_fraction(zeros, frac_high)}")
        last -= 1
    if first <= last:
        parts.append(f"(?:{integer_range(first, last)}){_fraction(zeros, nines)}")
    return "|".join(f"(?:{p})" for p in parts)


def _fraction_digits(value: Decimal, digits: int) -> str:
    if not digits:
        return ""
    return str(int((value - int(value)).scaleb(digits))).zfill(digits)


def _fraction(low: str, high: str) -> str:
    """The optional ``.ddd`` part whose digits, padded with zeros, lie in [low, high] (same-length strings)."""
    if not low:
        return ""
    tail = _digits_between(low, high)
    if tail is None:
        return ""
    return f"(?:\\.(?:{tail}))?" if set(low) <= {"0"} else f"\\.(?:{tail})"


def _digits_between(low: str, high: str) -> str | None:
    """A regex for 1..len(low) digits that, padded with zeros to len(low), lie in [low, high]; None if none."""
    size = len(low)
    if set(low) <= {"0"} and set(high) <= {"9"}:
        return f"[0-9]{{1,{size}}}"
    first_low, first_high = int(low[0]), int(high[0])
    parts = [_then(low[0], low[1:], high[1:] if first_low == first_high else "9" * (size - 1))]
    if first_high > first_low:
        if first_high - first_low > 1:
            parts.append(f"[{first_low + 1}-{first_high - 1}][0-9]{{0,{size - 1}}}")
        parts.append(_then(high[0], "0" * (size - 1), high[1:]))
    parts = [p for p in parts if p is not None]
    return "|".join(f"(?:{p})" for p in parts) if parts else None


def _then(head: str, low: str, high: str) -> str | None:
    stop_here = set(low) <= {"0"}  # the digits left are zeros
    tail = _digits_between(low, high) if low else None
    if tail is None:
        return head if stop_here else None
    return f"{head}(?:{tail})?" if stop_here else f"{head}(?:{tail})"


def integer_range(low: int, high: int) -> str:
    """A regex for the decimal integers in [low, high] (0 <= low <= high), without leading zeros."""
    parts, full = [], []  # full: lengths whose every number is in the range (merged into one class)
    for size in range(len(str(low)), len(str(high)) + 1):
        start, end = max(low, 10 ** (size - 1) if size > 1 else 0), min(high, 10**size - 1)
        if size > 1 and (start, end) == (10 ** (size - 1), 10**size - 1):
            full.append(size - 1)
        elif start <= end:
            parts.append(_same_length(str(start), str(end)))
    if full:
        parts.append(f"[1-9][0-9]{{{full[0]},{full[-1]}}}")
    return "|".join(f"(?:{p})" for p in parts)


def _same_length(low: str, high: str) -> str:
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return f"{low[0]}(?:{_same_length(low[1:], high[1:])})"
    rest = len(low) - 1
    if set(low[1:]) <= {"0"} and set(high[1:]) <= {"9"}:
        return f"[{low[0]}-{high[0]}][0-9]{{{rest}}}"
    parts = [f"{low[0]}(?:{_same_length(low[1:], '9' * rest)})"]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}][0-9]{{{rest}}}")
    parts.append(f"{high[0]}(?:{_same_length('0' * rest, high[1:])})")
    return "|".join(f"(?:{p})" for p in parts)


# --- a schema with the bounds written in --------------------------------------------------------------------


class BoundedSchema:
    """A JSON schema with the default bounds written in, for outlines-core to compile.

    Strings and arrays get ``maxLength`` / ``maxItems`` where they have none. Numbers, integers, untyped values
    and free-form objects, which outlines-core cannot bound, become placeholder constants (``markers``) whose
    regexes ``fill`` puts into the compiled regex.

    Args:
        schema: the user's schema (not modified).
        compile_value: compiles a sub-schema (with the root's ``$defs``) to a regex: the values of a free-form
            object with ``additionalProperties``.
    """

    def __init__(self, schema: Any, compile_value: Callable[[Any], str]) -> None:
        self.compile_value, self.root = compile_value, schema
        self.markers: dict[str, str] = {}
        text = repr(schema)
        self._tag = next(t for t in (secrets.token_hex(6) for _ in range(100)) if t not in text)
        self.schema = self._node(schema, top=True)

    def fill(self, regex: str) -> str:
        """The compiled regex with each marker replaced by the regex it stands for."""
        for marker, part in self.markers.items():
            regex = regex.replace(f'"{marker}"', f"(?:{part})")
        return regex

    def _mark(self, regex: str) -> dict[str, str]:
        marker = f"ovc{len(self.markers)}x{self._tag}"
        self.markers[marker] = regex
        return {"const": marker}

    def _node(self, node: Any, top: bool = False) -> Any:
        if node is True:
            return self._mark(any_value())
        if not isinstance(node, Mapping) or "enum" in node or "const" in node:
            return node
        if "$ref" in node:  # outlines-core reads only the reference (and the definitions beside it)
            return {k: self._children(v, k) if k in ("$defs", "definitions") else v for k, v in node.items()}
        kind = node.get("type")
        if isinstance(kind, list) and len(kind) > 1:
            keep = {k: node[k] for k in ("$defs", "definitions") if k in node}
            rest = {k: v for k, v in node.items() if k not in keep}
            return {**{k: self._children(v) for k, v in keep.items()},
                    "anyOf": [self._node({**rest, "type": t}) for t in kind]}
        kind = kind[0] if isinstance(kind, list) and kind else kind
        if kind in ("integer", "number"):
            return self._mark(number(node, kind == "integer"))
        if kind is None and not set(node) - _ANNOTATIONS and not top:
            return self._mark(any_value())
        if kind == "object" and not (set(node) & {"properties", "patternProperties", "allOf", "anyOf", "oneOf"}):
            values = node.get("additionalProperties")
            empty = f"\\{{{WHITESPACE}\\}}"  # additionalProperties: false and no properties
            return self._mark(empty if values is False else free_object(self._free_values(values)))
        return self._bounded(node, kind)

    def _bounded(self, node: Mapping[str, Any], kind: Any) -> dict[str, Any]:
        out = {k: (v if k in _NOT_SCHEMAS else self._children(v, k)) for k, v in node.items()}
        if kind == "array" and "maxItems" not in node:
            prefix = node.get("prefixItems")
            out["maxItems"] = max(MAX_ITEMS, _count(node, "minItems"), len(prefix) if isinstance(prefix, list) else 0)
        return out

    def _children(self, value: Any, key: str = "") -> Any:
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            return {name: self._node(sub) for name, sub in value.items()}
        if key in _SCHEMA_LISTS and isinstance(value, list):
            return [self._node(sub) for sub in value]
        if isinstance(value, Mapping) or value is True:
            return self._node(value)
        return value

    def _free_values(self, values: Any) -> str:
        if values is None or values is True or values == {}:
            return any_value()
        defs = {k: self.root[k] for k in ("$defs", "definitions") if isinstance(self.root, Mapping) and k in self.root}
        return self.compile_value({**values, **defs} if isinstance(values, Mapping) else values)


def _count(node: Mapping[str, Any], key: str) -> int:
    value = node.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
