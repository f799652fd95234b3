"""JSON that ends: numbers, arrays and free-form values in a response_format are bounded by default, a schema's
own bounds are honoured exactly, and SmolLM2 sampling at temperature 1 writes valid JSON through the server's
request layer and through generate()."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from ov_causal import StructuredOutputError
from ov_causal.model import json_bounds
from ov_causal.model.structured import constraint, schema_regex, shortest_output

jsonschema = pytest.importorskip("jsonschema")

COUNTRY = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "population": {"type": "integer"},
        "area_km2": {"type": "number"},
        "rank": {"type": "integer", "minimum": 1, "maximum": 200},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4},
    },
    "required": ["name", "population", "area_km2", "rank", "languages"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "country", "schema": COUNTRY}}
QUESTION = "Describe France as JSON: its name, population, area in km2, rank by size and languages."
SEEDS = range(5)
MAX_TOKENS = 160


def _full(schema) -> re.Pattern:
    return re.compile(schema_regex(schema))


# ---------------------------------------------------------------- the regexes (no model)


@pytest.mark.parametrize(("low", "high"), [(0, 100), (-5, 17), (3, 3), (-120, -7), (99, 1000), (7, 12345)])
def test_integer_ranges_are_exact(low, high):
    pattern = _full({"type": "integer", "minimum": low, "maximum": high})
    assert [n for n in range(-20000, 20000) if pattern.fullmatch(str(n))] == list(range(low, high + 1))
    assert not pattern.fullmatch(f"0{high}") and not pattern.fullmatch(f"{high}.0")


@pytest.mark.parametrize(("low", "high"), [("0.25", "0.75"), ("-1.5", "2.25"), ("1.05", "1.05"), ("-3.1", "-0.2"),
                                           ("2", "3.5")])
def test_number_ranges_are_exact(low, high):
    pattern = re.compile(json_bounds.decimal_range(Decimal(low), Decimal(high), 2))
    texts = [f"{sign}{i}{frac}" for sign in ("", "-") for i in range(6)
             for frac in ["", *(f".{f}" for f in range(10)), *(f".{f:02d}" for f in range(100))]]
    inside = [t for t in texts if Decimal(low) <= Decimal(t) <= Decimal(high)]
    assert [t for t in texts if pattern.fullmatch(t)] == inside


def test_exclusive_bounds_and_draft4_booleans():
    assert _full({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}).fullmatch("1")
    for schema in ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
                   {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 3, "exclusiveMaximum": True}):
        pattern = _full(schema)
        assert [n for n in range(-5, 6) if pattern.fullmatch(str(n))] == [1, 2]
    pattern = _full({"type": "number", "exclusiveMinimum": 0.5})
    assert not pattern.fullmatch("0.5") and pattern.fullmatch("0.500001") and not pattern.fullmatch("-1")


def test_default_bounds():
    integer, number = _full({"type": "integer"}), _full({"type": "number"})
    digits = json_bounds.MAX_INTEGER_DIGITS
    assert integer.fullmatch("9" * digits) and not integer.fullmatch("9" * (digits + 1))
    assert number.fullmatch("-1.5e+10") and number.fullmatch("0." + "1" * json_bounds.MAX_FRACTION_DIGITS)
    assert not number.fullmatch("0." + "1" * (json_bounds.MAX_FRACTION_DIGITS + 1)) and not number.fullmatch("1e1234")
    items = _full({"type": "array", "items": {"type": "integer"}})
    assert items.fullmatch(json.dumps([1] * json_bounds.MAX_ITEMS)) and not items.fullmatch(
        json.dumps([1] * (json_bounds.MAX_ITEMS + 1)))
    free = _full({"type": "object"})
    assert free.fullmatch(json.dumps({f"k{i}": {"a": [1, "x"]} for i in range(json_bounds.MAX_PROPERTIES)}))
    assert not free.fullmatch(json.dumps({f"k{i}": 1 for i in range(json_bounds.MAX_PROPERTIES + 1)}))
    untyped = _full({"type": "object", "properties": {"x": {}}, "required": ["x"]})
    assert untyped.fullmatch('{"x":[{"a":null}]}') and not untyped.fullmatch('{"x":' + "1" * 16 + "}")


def test_a_schemas_own_bounds_replace_the_defaults_larger_or_smaller():
    big = _full({"type": "integer", "maximum": 10**20})
    assert big.fullmatch(str(10**20)) and not big.fullmatch(str(10**20 + 1)) and big.fullmatch("-" + "9" * 15)
    many = _full({"type": "array", "items": {"type": "integer"}, "maxItems": 40})
    assert many.fullmatch(json.dumps([1] * 40)) and not many.fullmatch(json.dumps([1] * 41))
    few = _full({"type": "array", "items": {"type": "integer"}, "minItems": 20})  # more than the default maximum
    assert few.fullmatch(json.dumps([1] * 20))
    text = _full({"type": "string", "maxLength": 3})
    assert text.fullmatch('"abc"') and not text.fullmatch('"abcd"')
    assert _full({"type": "string"}).fullmatch('"' + "a" * 1000 + '"')  # strings: no default (see json_bounds)


def test_values_in_type_lists_definitions_and_additional_properties_are_bounded():
    schema = {"$defs": {"n": {"type": "integer", "minimum": 1, "maximum": 2}},
              "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"type": ["integer", "null"]},
                                               "c": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}},
              "required": ["a", "b", "c"]}
    pattern = _full(schema)
    assert pattern.fullmatch('{"a":2,"b":null,"c":{"x":1}}') and pattern.fullmatch('{"a":1,"b":-7,"c":{}}')
    assert not pattern.fullmatch('{"a":3,"b":null,"c":{}}') and not pattern.fullmatch('{"a":1,"b":null,"c":{"x":3}}')
    assert not pattern.fullmatch('{"a":1,"b":' + "1" * 16 + ',"c":{}}')


def test_an_empty_range_is_a_clear_error():
    with pytest.raises(StructuredOutputError, match="minimum=5, maximum=3: no integer lies in that range"):
        schema_regex({"type": "integer", "minimum": 5, "maximum": 3}, "r")
    with pytest.raises(StructuredOutputError, match="maximum = 'ten': it must be a number"):
        schema_regex({"type": "number", "maximum": "ten"}, "r")


def test_json_object_is_a_bounded_grammar_the_engines_compiler_takes():
    from ov_causal.serving.grammar_worker import xgrammar_core

    grammar = constraint({"type": "json_object"})["grammar"]
    assert f"[0-9]{{0,{json_bounds.MAX_INTEGER_DIGITS - 1}}}" in grammar
    assert not re.search(r'[)\]"a-z0-9][*+]', grammar)  # no unbounded repetition
    core = xgrammar_core()
    compiler = core.GrammarCompiler(core.TokenizerInfo(["a", "{", "}"], 0, None, None, False), 1, False, -1)
    compiler.compile_grammar_from_strings(grammar, "root")


def test_shortest_output():
    keywords = tuple(sorted(constraint(FORMAT).items()))
    shortest = shortest_output(keywords)
    assert json.loads(shortest) == {"name": "", "population": 0, "area_km2": 0, "rank": 1, "languages": []}
    assert shortest_output(tuple(sorted(constraint({"type": "json_object"}).items()))) == "{}"


# ---------------------------------------------------------------- SmolLM2 writes JSON that ends


def _check(text: str) -> dict:
    value = json.loads(text)
    jsonschema.validate(value, COUNTRY)
    return value


@pytest.fixture(scope="module")
def completer(smollm2_export: Path):
    from ov_causal.serving.completer import Completer
    from ov_causal.serving.scheduler import ServingCore

    core = ServingCore(smollm2_export)
    completer = Completer(core, "smollm2")
    yield completer
    completer.grammars.close()
    core.close()


def test_server_path_writes_valid_json_five_times_of_five(completer):
    from ov_causal.serving.completer import Sampling

    prompt = completer.encode_chat([{"role": "user", "content": QUESTION}])
    texts = []
    for seed in SEEDS:
        sampling = Sampling(max_tokens=MAX_TOKENS, temperature=1.0, seed=seed, response_format=FORMAT)
        output = completer.complete(prompt, sampling, None)[0]
        assert output.finish_reason == "stop", output.text
        texts.append(_check(output.text))
    assert len({json.dumps(t) for t in texts}) > 1  # the seeds did vary the samples


def test_max_tokens_below_the_shortest_output_is_refused(completer):
    from ov_causal.errors import APIError
    from ov_causal.serving.completer import Sampling

    prompt = completer.encode_chat([{"role": "user", "content": QUESTION}])
    with pytest.raises(APIError, match="max_tokens=5 cannot hold the shortest JSON") as info:
        completer.complete(prompt, Sampling(max_tokens=5, response_format=FORMAT), None)
    assert info.value.status == 400 and info.value.code == "max_tokens_too_small_for_response_format"


def test_generate_writes_valid_json_five_times_of_five(smollm2_export: Path):
    import torch
    from transformers import AutoTokenizer

    from ov_causal import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_export)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_export)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    for seed in SEEDS:
        torch.manual_seed(seed)
        out = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=True, temperature=1.0, top_k=0,
                             response_format=FORMAT)
        assert model.last_engine == "genai"
        new = out[0, inputs["input_ids"].shape[1]:]
        assert len(new) < MAX_TOKENS or new[-1] == tokenizer.eos_token_id
        _check(tokenizer.decode(new, skip_special_tokens=True))
