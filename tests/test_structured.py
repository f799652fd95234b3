"""response_format: JSON output constrained by GenAI, even from the demo model (which never learned JSON)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ov_causal import AutoModelForCausalLM, OptionError, OVCausalError, StructuredOutputError
from ov_causal.model.run import DEMO_MODEL
from ov_causal.model.structured import constraint, schema_regex, structured_output_config

PROMPTS = ("DEFAULTS = ", "    data = ", "config = json.loads(")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "enabled": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "kind": {"enum": ["file", "dir"]},
    },
    "required": ["name", "count", "score", "enabled", "tags", "kind"],
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "entry", "schema": SCHEMA, "strict": True}}


def _validate(value: Any, schema: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:  # the required keys and their types, by hand
        types = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list}
        assert isinstance(value, dict) and set(schema["required"]) <= set(value)
        for key, spec in schema["properties"].items():
            if "type" in spec:
                assert isinstance(value[key], types[spec["type"]]), (key, value[key])
            else:
                assert value[key] in spec["enum"]
        return
    jsonschema.validate(value, schema)


@pytest.fixture(scope="module")
def demo():
    return AutoModelForCausalLM.from_pretrained(str(DEMO_MODEL))


def _complete(model: Any, prompt: str, **kwargs: Any) -> str:
    inputs = model.tokenizer(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=200, **kwargs)
    assert model.last_engine == "genai"
    return model.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_without_a_constraint_the_demo_model_writes_no_json(demo):
    for prompt in PROMPTS:
        with pytest.raises(ValueError):
            json.loads(_complete(demo, prompt))


@pytest.mark.parametrize("do_sample", [False, True])
def test_json_object_parses_three_times_out_of_three(demo, do_sample, capfd):
    import torch

    for seed, prompt in enumerate(PROMPTS):
        torch.manual_seed(seed)
        text = _complete(demo, prompt, do_sample=do_sample, response_format={"type": "json_object"})
        assert isinstance(json.loads(text), dict), text
        assert "\n" not in text and "  " not in text  # whitespace stays bounded
    assert "clamping" not in capfd.readouterr().err  # no xgrammar warning per request


@pytest.mark.parametrize("do_sample", [False, True])
def test_json_schema_output_validates_three_times_out_of_three(demo, do_sample):
    import torch

    texts = []
    for seed, prompt in enumerate(PROMPTS):
        torch.manual_seed(seed)
        text = _complete(demo, prompt, do_sample=do_sample, response_format=JSON_SCHEMA)
        _validate(json.loads(text), SCHEMA)
        assert "\n" not in text and "  " not in text
        texts.append(text)
    if do_sample:
        assert len(set(texts)) > 1  # the seeds are honoured: sampling did vary


def test_a_bad_schema_is_a_clear_error_before_generation(demo):
    inputs = demo.tokenizer("x = ", return_tensors="pt")
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}}
    with pytest.raises(StructuredOutputError, match="'x' cannot be compiled.*frob"):
        demo.generate(**inputs, max_new_tokens=4, response_format=bad)


def test_the_transformers_loop_refuses_response_format(demo):
    inputs = demo.tokenizer("x = ", return_tensors="pt")
    demo.backend = "optimum"
    try:
        with pytest.raises(OptionError, match="response_format= exists only in the GenAI engine.*backend='genai'"):
            demo.generate(**inputs, max_new_tokens=4, response_format={"type": "json_object"})
    finally:
        demo.backend = "auto"


def test_text_is_no_constraint():
    assert structured_output_config({"type": "text"}) is None
    assert structured_output_config(None) is None


def test_configs_genai_accepts():
    import openvino_genai

    config = openvino_genai.GenerationConfig(max_new_tokens=8)
    config.structured_output_config = structured_output_config({"type": "json_object"})
    config.structured_output_config = structured_output_config(JSON_SCHEMA)
    assert config.structured_output_config.regex == constraint(JSON_SCHEMA)["regex"]


def test_schema_regex_bounds_whitespace():
    pattern = re.compile(schema_regex({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))
    assert pattern.fullmatch('{"a":1}') and pattern.fullmatch('{ "a" : 1 }')
    assert not pattern.fullmatch('{"a"\n:1}') and not pattern.fullmatch('{"a":  1}')


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        ("json", "is not an object"),
        ({"type": "xml"}, "type 'xml'; allowed types: text, json_object, json_schema"),
        ({"type": "json_object", "schema": {}}, "unknown keys \\['schema'\\]"),
        ({"type": "json_schema"}, "'json_schema' = None"),
        ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "json_schema.name = None"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": SCHEMA}}, "json_schema.name = 'a b'"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": SCHEMA, "strict": "yes"}}, "strict"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": SCHEMA, "extra": 1}}, "unknown json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": [1]}}, "must be a JSON schema object"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": {"$ref": "#/nope"}}}, "Invalid reference"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": {"type": "string", "pattern": "("}}},
         "invalid regex"),
        ({"type": "json_schema", "json_schema": {"name": "e", "schema": {"const": float("nan")}}},
         "not JSON-serialisable"),
    ],
)
def test_malformed_response_formats_say_why(response_format, message):
    with pytest.raises(StructuredOutputError, match=message) as info:
        constraint(response_format)
    assert isinstance(info.value, ValueError) and isinstance(info.value, OVCausalError)


def test_properties_are_written_in_the_schemas_order():
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"]}
    pattern = re.compile(schema_regex(schema))
    assert pattern.fullmatch('{"zeta":1,"alpha":2}') and not pattern.fullmatch('{"alpha":2,"zeta":1}')
