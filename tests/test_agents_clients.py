"""Agent clients against ``ov-causal serve``: LangChain's ``ChatOpenAI.bind_tools`` and the OpenAI Agents SDK run a
one-tool task on SmolLM2-135M-Instruct (int8), as their users would, with nothing but ``base_url`` changed."""

from __future__ import annotations

import json

import pytest

from .conftest import free_port

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from ov_causal.serving import ray_serve as serving  # noqa: E402

NAME = "smollm2"
QUESTION = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def url(smollm2_preset):
    url = serving.serve(str(smollm2_preset("int8")), ray=False, name=NAME, port=free_port(), max_batch=4,
                        blocking=False)
    yield url
    serving.shutdown()


def test_langchain_bind_tools_round_trip(url):
    lc = pytest.importorskip("langchain_openai", reason="LangChain's OpenAI client (langchain-openai, [test] extra)")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"It is 18 C and sunny in {city}."

    llm = lc.ChatOpenAI(base_url=url, api_key="none", model=NAME, temperature=0, max_retries=0, timeout=300)
    called = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([HumanMessage(QUESTION)])
    assert len(called.tool_calls) == 1, called
    call = called.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str), call
    assert call["id"] and not called.invalid_tool_calls

    result = get_weather.invoke(call["args"])
    answer = llm.bind_tools([get_weather]).invoke(
        [HumanMessage(QUESTION), called, ToolMessage(result, tool_call_id=call["id"])])
    assert isinstance(answer.content, str)
    assert answer.content.strip() or answer.tool_calls, answer  # a text answer, or another well-formed call
    for again in answer.tool_calls:
        assert again["name"] == "get_weather" and isinstance(again["args"], dict)


def test_langchain_streams_tool_call_chunks(url):
    lc = pytest.importorskip("langchain_openai", reason="LangChain's OpenAI client (langchain-openai, [test] extra)")
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = lc.ChatOpenAI(base_url=url, api_key="none", model=NAME, temperature=0, max_retries=0, timeout=300,
                        streaming=True)
    merged = None
    for chunk in llm.bind_tools([add], tool_choice="required").stream("What is 2 plus 3?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and len(merged.tool_calls) >= 1, merged
    call = merged.tool_calls[0]
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}, call
    assert all(isinstance(v, int) for v in call["args"].values()), call


def test_openai_agents_sdk_one_tool_task(url):
    agents = pytest.importorskip("agents", reason="the OpenAI Agents SDK (openai-agents, [test] extra)")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)  # no trace export to api.openai.com
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return f"It is 18 C and sunny in {city}."

    model = agents.OpenAIChatCompletionsModel(model=NAME, openai_client=AsyncOpenAI(base_url=url, api_key="none",
                                                                                   max_retries=0, timeout=300))
    agent = agents.Agent(name="weather", instructions="Use the tool to answer.", tools=[get_weather], model=model,
                         model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=96))
    result = agents.Runner.run_sync(agent, QUESTION, max_turns=4)
    assert len(calls) >= 1 and all(isinstance(c, str) for c in calls), calls
    kinds = [item.type for item in result.new_items]
    assert "tool_call_item" in kinds and "tool_call_output_item" in kinds, kinds
    output = [item for item in result.new_items if item.type == "tool_call_output_item"][0]
    assert "18 C" in str(output.output)
    assert isinstance(result.final_output, str) and result.final_output.strip(), result.final_output
    json.dumps(result.to_input_list())  # the history the SDK would send next turn is plain JSON
