"""Tools on the server (``ray=False``), driven with the ``openai`` SDK: SmolLM2 round trips (a call, then its result
answered in text), streamed and not; on a random tiny model "required"/named calls always parse and validate,
which without the constraint they do not; the 400s; plain chat unchanged."""

from __future__ import annotations

import json

import pytest

from .conftest import free_port

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("uvicorn")

from ov_causal.serving import ray_serve as serving  # noqa: E402

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "maxLength": 20},
                                                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                                "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a time zone", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}, "hours": {
        "type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TEMPLATE = ("{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools>{% endif %}"
            "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _valid(call) -> bool:
    """The call names a tool and its arguments are JSON that validates against that tool's schema."""
    schema = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}.get(call.function.name)
    try:
        jsonschema.validate(json.loads(call.function.arguments), schema)
    except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return schema is not None


@pytest.fixture(scope="class")  # one server a process: each class has its own
def smol(smollm2_preset):
    url = serving.serve(str(smollm2_preset("int8")), ray=False, name="smol", port=free_port(), blocking=False)
    yield openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
    serving.shutdown()


class TestSmolLM2:

    def test_smollm2_round_trip(self, smol):
        first = smol.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice="required",
                                             max_tokens=60, temperature=0)
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id.startswith("call_") and _valid(call)
        history = [*ASK, choice.message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 22, "sky": "clear"})}]
        answer = smol.chat.completions.create(model="smol", messages=history, tools=TOOLS, tool_choice="none",
                                              max_tokens=30, temperature=0)
        assert answer.choices[0].message.content and answer.choices[0].message.tool_calls is None
        assert answer.choices[0].finish_reason in ("stop", "length")


    def test_smollm2_streamed_call_equals_the_plain_one(self, smol):
        named = {"type": "function", "function": {"name": "get_time"}}
        plain = smol.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice=named, max_tokens=60,
                                             temperature=0)
        chunks = list(smol.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice=named,
                                                   max_tokens=60, temperature=0, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        pieces = [t for d in deltas for t in d.tool_calls or ()]
        assert pieces[0].id and pieces[0].function.name == "get_time" and pieces[0].type == "function"
        arguments = "".join(p.function.arguments or "" for p in pieces)
        assert arguments == plain.choices[0].message.tool_calls[0].function.arguments
        assert not "".join(d.content or "" for d in deltas)  # no tag text in content
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.fixture(scope="class")
def tiny(make_export):
    """A random tiny model (context: 256 tokens) with a template that renders the tools' names (natively)."""
    url = serving.serve(str(make_export("llama")), ray=False, name="tiny", port=free_port(), chat_template=TEMPLATE,
                        blocking=False)
    yield openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
    serving.shutdown()


class TestTinyModel:

    @pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
    def test_random_model_calls_always_parse_and_validate(self, tiny, choice):
        """A random model writes valid calls only because the output is constrained; unconstrained it writes none."""
        for seed in range(4):
            done = tiny.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=choice,
                                                max_tokens=100, temperature=1.0, seed=seed, parallel_tool_calls=False)
            calls = done.choices[0].message.tool_calls
            assert done.choices[0].finish_reason == "tool_calls" and len(calls) == 1 and _valid(calls[0])
            if isinstance(choice, dict):
                assert calls[0].function.name == "get_time"
            free = tiny.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="none",
                                                max_tokens=100, temperature=1.0, seed=seed)
            assert free.choices[0].message.tool_calls is None and free.choices[0].finish_reason != "tool_calls"


    @pytest.mark.parametrize(("extra", "param"), [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
         "tools[0].function.parameters"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, "messages[1].tool_call_id"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
])
    def test_bad_tool_requests_get_400_naming_the_field(self, tiny, extra, param):
        with pytest.raises(openai.BadRequestError) as info:
            tiny.chat.completions.create(model="tiny", **{"messages": ASK, **extra}, max_tokens=4)
        assert info.value.body["param"] == param, info.value.body


    def test_plain_chat_is_unchanged_by_tools_support(self, tiny):
        """Without tools the answer is the text, no tool_calls; auto with a model that writes no call is the same."""
        plain = tiny.chat.completions.create(model="tiny", messages=ASK, max_tokens=12, temperature=0)
        auto = tiny.chat.completions.create(model="tiny", messages=ASK, max_tokens=12, temperature=0, tools=TOOLS,
                                            tool_choice="none")
        assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content
        assert plain.choices[0].finish_reason == "length" and auto.choices[0].message.tool_calls is None
        assert auto.usage.prompt_tokens > plain.usage.prompt_tokens  # the template renders the tools
