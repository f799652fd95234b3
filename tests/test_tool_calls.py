"""Tool calls without a server: the formats parsed whole and in pieces, the fallback prompt, the constraints (what
their regexes accept, and that the engine's grammar compiler takes them), and the Python pipeline with tools=."""

from __future__ import annotations

import json
import random
import re

import pytest

import ov_causal
from ov_causal import OptionError, StructuredOutputError
from ov_causal.model.tool_calls import FORMATS, ToolCallStream, assemble, detect_format, parse_tool_calls
from ov_causal.model.tool_prompt import check_parameters, fallback_messages, native, tool_constraint

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1,
                                                                          "maximum": 7}},
    "required": ["city"]}}}
NOW = {"type": "function", "function": {"name": "now"}}
TOOLS = [WEATHER, NOW]

# (format, text, content expected, calls expected as (name, arguments))
CASES = [
    ("hermes", 'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me look.", [("get_weather", {"city": "Paris"})]),
    ("hermes", '<tool_call>{"name": "now", "arguments": {}}</tool_call>\n<tool_call>{"name": "get_weather", '
     '"arguments": "{\\"city\\": \\"Oslo\\", \\"days\\": 2}"}</tool_call>', None,
     [("now", {}), ("get_weather", {"city": "Oslo", "days": 2})]),
    ("hermes", '<tool_call>{"name": "now", "arguments": {}}', None, [("now", {})]),  # unclosed at the end
    ("hermes", "No tools needed.  \n", "No tools needed.  \n", []),
    ("hermes", "<tool_call>{not json}</tool_call>", "<tool_call>{not json}</tool_call>", []),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}', None,
     [("get_weather", {"city": "Rome"})]),
    ("llama3_json", '{"name": "now", "parameters": {}}; {"name": "get_weather", "parameters": {"city": "A"}}',
     None, [("now", {}), ("get_weather", {"city": "A"})]),
    ("llama3_json", '{"answer": 42}', '{"answer": 42}', []),
    ("llama3_pythonic", '[get_weather(city="Lima", days=3), now()]', None,
     [("get_weather", {"city": "Lima", "days": 3}), ("now", {})]),
    ("llama3_pythonic", "[1, 2, 3] are numbers", "[1, 2, 3] are numbers", []),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Bern"}}]', None,
     [("get_weather", {"city": "Bern"})]),
    ("mistral", 'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Kyiv"}', "Sure.", [("get_weather", {"city": "Kyiv"})]),
]


def _calls(message: dict) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]]


@pytest.mark.parametrize(("format", "text", "content", "calls"), CASES)
def test_each_format_parses(format, text, content, calls):
    message = parse_tool_calls(text, format=format)
    assert (message["content"], _calls(message)) == (content, calls)
    for call in message["tool_calls"]:
        assert call["type"] == "function" and re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
        assert isinstance(call["function"]["arguments"], str)


@pytest.mark.parametrize(("format", "text", "content", "calls"), CASES)
def test_streamed_in_any_pieces_adds_up_to_the_same_and_leaks_no_tag(format, text, content, calls):
    rng = random.Random(0)
    for _ in range(20):
        stream, deltas, pos = ToolCallStream(format), [], 0
        while pos < len(text):
            step = rng.randint(1, 6)
            deltas += stream.feed(text[pos:pos + step])
            pos += step
        deltas += stream.finish()
        message = assemble(deltas)
        assert (message["content"], _calls(message)) == (content, calls)
        pieces = [d for d in deltas if "tool_calls" in d]
        for i in range(len(calls)):  # per call: id, type and name first, then the arguments
            head, body = [p["tool_calls"][0] for p in pieces if p["tool_calls"][0]["index"] == i]
            assert head["id"] and head["type"] == "function" and head["function"] == {"name": calls[i][0],
                                                                                      "arguments": ""}
            assert set(body) == {"index", "function"} and json.loads(body["function"]["arguments"]) == calls[i][1]
        if calls:
            sent = "".join(d.get("content", "") for d in deltas)
            assert not any(tag in sent for tag in ("<tool_call", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]"))


def test_text_is_streamed_as_it_comes_and_a_partial_tag_is_held():
    stream = ToolCallStream("hermes")
    assert stream.feed("Hello wor") == [{"content": "Hello wor"}]
    assert stream.feed("ld <tool_") == [{"content": "ld"}]  # "<tool_" may open a call, the space may end: held
    assert stream.feed("cell>") == [{"content": " <tool_cell>"}]  # it did not


def test_unknown_function_stays_text_and_unknown_format_is_refused():
    text = '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>'
    assert parse_tool_calls(text, tools=TOOLS) == {"role": "assistant", "content": text, "tool_calls": []}
    assert _calls(parse_tool_calls(text)) == [("delete_all", {})]
    with pytest.raises(OptionError, match="'hermes'"):
        parse_tool_calls(text, format="hermez")


def test_public_name():
    assert "parse_tool_calls" in dir(ov_causal) and ov_causal.parse_tool_calls is parse_tool_calls


@pytest.mark.parametrize(("source", "format", "renders_tools"), [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", "hermes", False),  # SmolLM2-like: the fallback
    ("{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>{% endif %}<tool_call>", "hermes",
     True),
    ("{%- if tools is not none %}{{- '<|python_tag|>' }}{% endif %}", "llama3_json", True),
    ("{{ '[AVAILABLE_TOOLS]' + tools|tojson }}[TOOL_CALLS]", "mistral", True),
    ("{{ '<|python_start|>' }}{{ tools }}", "llama3_pythonic", True),
])
def test_format_and_native_tools_from_the_template(source, format, renders_tools):
    assert detect_format(source) == format and native(source) is renders_tools


def test_parameters_are_checked_as_json_schema():
    check_parameters(WEATHER["function"]["parameters"])
    for bad in ({"type": "objekt"}, {"type": "object", "properties": {"a": {"minimum": "x"}}}, [1]):
        with pytest.raises(StructuredOutputError):
            check_parameters(bad)


def test_fallback_prompt_lists_the_tools_and_writes_history_as_hermes_text():
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "P"}}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "22 C"},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    out = fallback_messages(messages, TOOLS)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert json.dumps(WEATHER) in out[0]["content"] and "<tool_call>" in out[0]["content"]
    assert _calls(parse_tool_calls(out[2]["content"])) == [("get_weather", {"city": "P"})]
    assert out[3]["content"] == "<tool_response>\n22 C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
    assert fallback_messages(messages[:1], None) == messages[:1]  # no tools offered: nothing added


@pytest.mark.parametrize("format", FORMATS)
def test_required_regex_accepts_exactly_valid_calls(format):
    regex = re.compile(tool_constraint(TOOLS, "required", True, format)["regex"])
    one = tool_constraint(TOOLS, "required", False, format)["regex"]
    named = tool_constraint(TOOLS, {"type": "function", "function": {"name": "now"}}, True, format)["regex"]
    good = {"hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
            "llama3_json": '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
            "llama3_pythonic": '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
            "mistral": '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]'}[format]
    assert regex.fullmatch(good) and re.fullmatch(one, good) and not re.fullmatch(named, good)
    assert _calls(parse_tool_calls(good, TOOLS, format)) == [("get_weather", {"city": "Paris", "days": 3})]
    for bad in (good.replace("3}", "9}"), good.replace('"city": "Paris", ', ""), good.replace("get_", "set_"), ""):
        assert not regex.fullmatch(bad), bad


def test_auto_is_a_triggered_structural_tag():
    spec = json.loads(tool_constraint(TOOLS, "auto", False, "hermes")["structural_tags_config"])["format"]
    assert spec["type"] == "triggered_tags" and spec["triggers"] == ["<tool_call>"] and spec["stop_after_first"]
    assert [t["begin"] for t in spec["tags"]] == ['<tool_call>\n{"name": "get_weather", "arguments": ',
                                                  '<tool_call>\n{"name": "now", "arguments": ']
    assert tool_constraint(TOOLS, "none") is None


@pytest.mark.parametrize("format", FORMATS)
def test_the_engine_compiler_takes_every_constraint(format, tokenizer_dir):
    from ov_causal.model.tool_prompt import tools_format
    from ov_causal.serving.grammar_worker import _compiler, compile_format

    compiler = _compiler(tokenizer_dir)  # the vocabulary of the tiny models
    for choice in ("required", "auto", {"type": "function", "function": {"name": "get_weather"}}):
        assert compile_format(compiler, tools_format(TOOLS, choice, True, format))


def test_pipeline_with_tools_renders_as_transformers_and_its_output_parses(make_checkpoint):
    """``pipeline("text-generation")`` passes tools= to the chat template as transformers does; the reply parses."""
    from transformers import AutoTokenizer

    folder = make_checkpoint("llama")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = ("{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>{% endif %}"
                         "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>")
    pipe = ov_causal.pipeline("text-generation", model=str(folder), tokenizer=tok)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    seen = []
    generate = pipe.model.generate
    pipe.model.generate = lambda *a, **k: seen.append(k.get("input_ids", a[0] if a else None)) or generate(*a, **k)
    out = pipe(messages, tools=[WEATHER], max_new_tokens=8, do_sample=False)
    expected = tok.apply_chat_template(messages, tools=[WEATHER], add_generation_prompt=False, tokenize=True,
                                       return_dict=True)["input_ids"]
    assert seen[0][0].tolist() == list(expected) and "get_weather" in tok.decode(expected)
    reply = out[0]["generated_text"][-1]
    assert reply["role"] == "assistant"
    assert parse_tool_calls(reply["content"], [WEATHER])["content"] == reply["content"]  # a random model: no call


def test_cut_answer_keeps_finish_reason_length():
    from ov_causal.serving.tool_requests import finish_reason_of

    assert finish_reason_of("stop", calls=True) == "tool_calls"
    assert finish_reason_of("length", calls=True) == "length"  # its last call may be cut off, left in content
    assert finish_reason_of("stop", calls=False) == "stop"
