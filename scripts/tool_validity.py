"""Share of tool calls that parse and validate against their schema, with and without constraints, through the server.

    python scripts/tool_validity.py SMOLLM2_FOLDER TINY_FOLDER [--prompts 20] [--json out.json]

Each folder is served with ``ov-causal serve --no-ray`` in this process (one after the other) and asked N prompts x
2 tool sets under four settings: ``auto`` and ``required`` unconstrained (the parser only), ``auto`` with the
triggered grammar, and ``required`` constrained. A call counts as valid when it parses and its arguments validate
(``jsonschema``) against the tool's parameters; the table gives the requests answered with a valid call, the calls
made and the valid share of them. Greedy for SmolLM2, temperature 1 (seeded) for the random model.
"""

from __future__ import annotations

import argparse
import json
import socket
from unittest import mock

import jsonschema
import openai

from ov_causal.serving import ray_serve as serving

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {
               "type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}
SEARCH = {"type": "function", "function": {"name": "search", "description": "Search the web", "parameters": {
    "type": "object", "properties": {"query": {"type": "string", "maxLength": 60}, "results": {
        "type": "integer", "minimum": 1, "maximum": 10}}, "required": ["query", "results"]}}}
TOOL_SETS = {"weather": [WEATHER], "weather+search": [WEATHER, SEARCH]}
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Perth", "Seoul", "Rome"]
TINY_TEMPLATE = ("{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools>{% endif %}"
                 "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}<|assistant|>")


def prompts(n: int) -> list[str]:
    asks = ["What is the weather in {c}?", "Should I take an umbrella in {c} today?", "Find news about {c}."]
    return [asks[i % len(asks)].format(c=CITIES[i % len(CITIES)]) for i in range(n)]


def valid(call: object, tools: list[dict]) -> bool:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    try:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
    except (KeyError, ValueError, jsonschema.ValidationError):
        return False
    return True


def measure(client: openai.OpenAI, name: str, n: int, sampled: bool) -> list[dict]:
    rows = []
    settings = {"auto, parser only": ("auto", True), "auto, triggered grammar": ("auto", False),
                "required, parser only": ("required", True), "required": ("required", False)}
    for label, (choice, unconstrained) in settings.items():
        requests = calls = good = answered = 0
        for tools in TOOL_SETS.values():
            for i, text in enumerate(prompts(n)):
                kwargs = dict(temperature=1.0, seed=i) if sampled else dict(temperature=0)
                with mock.patch("ov_causal.serving.tool_requests.tools_format", return_value=None) if unconstrained \
                        else _nothing():
                    done = client.chat.completions.create(model=name, messages=[{"role": "user", "content": text}],
                                                          tools=tools, tool_choice=choice, max_tokens=80, **kwargs)
                found = done.choices[0].message.tool_calls or []
                ok = sum(valid(c, tools) for c in found)
                requests, calls, good, answered = requests + 1, calls + len(found), good + ok, answered + bool(ok)
        rows.append({"model": name, "setting": label, "requests": requests, "calls": calls, "valid": good,
                     "answered": answered})
    return rows


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("smollm2")
    parser.add_argument("tiny")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name, folder, template, sampled in (("SmolLM2-135M-Instruct int8", args.smollm2, None, False),
                                            ("random tiny llama", args.tiny, TINY_TEMPLATE, True)):
        url = serving.serve(folder, ray=False, name=name, port=free_port(), chat_template=template, blocking=False)
        try:
            rows += measure(openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600), name,
                            args.prompts, sampled)
        finally:
            serving.shutdown()
    print("| model | setting | requests | with a valid call | calls | valid calls |\n|---|---|---|---|---|---|")
    for r in rows:
        share = f"{r['valid']}/{r['calls']} ({100 * r['valid'] / r['calls']:.0f}%)" if r["calls"] else "0/0"
        print(f"| {r['model']} | {r['setting']} | {r['requests']} | {r['answered']} | {r['calls']} | {share} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
