"""The requests of ``scripts/soak.py``: valid, hostile and abandoned, against an OpenAI-compatible server.

Each request returns a ``Result``: its class, its kind, the HTTP status (or what happened instead) and its
time. Every wait is bounded (``TIMEOUT``); nothing here retries.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from load_test import PROMPTS

MODEL = "soak"  # the --name the soak gives the server
TIMEOUT = 120.0  # seconds any one request may take
ABANDONED_TOKENS = 400  # asked of an abandoned request: long, within the demo model's 512-token context
# Regex constructs the engine's grammar compiler (xgrammar) cannot take: each must be a 400, never a failed step.
PATTERNS = ("(?=x)", "(?!a)", "(?<=a)b", "(?>ab)", "a*+", "\\bword\\b", "(?P<n>a)")
SMALL_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"]}
BIG_SCHEMA_EVERY = 30.0  # seconds between two 300-property schemas (each holds the grammar compiler ~5 s)
# Bodies the API must refuse with a 4xx: (path under /v1, raw body).
MALFORMED = (
    ("/completions", b"{not json"),
    ("/completions", b"[]"),
    ("/completions", b""),
    ("/completions", b"\xff\xfe\x00"),
    ("/completions", b'{"prompt": 12}'),
    ("/completions", b'{"prompt": "x", "max_tokens": "12"}'),
    ("/completions", b'{"prompt": "x", "temperature": NaN}'),
    ("/completions", b'{"prompt": "x", "max_tokens": -1}'),
    ("/completions", b'{"prompt": "x", "best_of": 2}'),
    ("/completions", b'{"prompt": "\\ud800"}'),
    ("/completions", b'{"prompt": "x", "response_format": {"type": "json_schema", "json_schema": 5}}'),
    ("/chat/completions", b'{"messages": []}'),
    ("/chat/completions", b'{"messages": [{"role": "user", "content": []}]}'),
    ("/chat/completions", b'{"messages": [{"role": "tool", "content": "x"}]}'),
)


@dataclass(frozen=True)
class Result:
    klass: str  # valid | hostile | abandoned
    kind: str  # e.g. chat_stream_json, bad_pattern, dropped_stream
    status: str  # "200", "400", ... or "timeout", "connection_error", "stream_error", "closed"
    seconds: float


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "soak", "schema": schema}}


def valid_body(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """(kind, path, body) of a valid request: completion or chat, streaming or not, 16-64 tokens, some JSON."""
    chat, stream, structured = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.2
    prompt = rng.choice(PROMPTS)
    body: dict[str, Any] = {"model": MODEL, "max_tokens": rng.randint(16, 64), "temperature": rng.choice((0, 0.7)),
                            "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    if structured:
        body["response_format"] = _format(SMALL_SCHEMA)
    kind = ("chat" if chat else "completion") + ("_stream" if stream else "") + ("_json" if structured else "")
    return kind, "/chat/completions" if chat else "/completions", body


def every_valid_kind() -> list[tuple[str, str, dict[str, Any]]]:
    """One request of each valid kind (a warm-up: the JSON schema compiled and cached before timing)."""
    seen: dict[str, tuple[str, str, dict[str, Any]]] = {}
    rng = random.Random(0)
    while len(seen) < 8:
        kind, path, body = valid_body(rng)
        seen.setdefault(kind, (kind, path, body))
    return list(seen.values())


async def send(client: Any, url: str, klass: str, kind: str, path: str, body: dict[str, Any] | bytes) -> Result:
    """POST ``body`` to ``url + path``; a stream is read to its end. Status "stream_error" for an error chunk."""
    start = time.perf_counter()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    try:
        if isinstance(body, dict) and body.get("stream"):
            async with client.stream("POST", url + path, content=content, headers=headers) as response:
                status = str(response.status_code)
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"error"' in line[:20]:
                        status = "stream_error"
        else:
            status = str((await client.post(url + path, content=content, headers=headers)).status_code)
    except asyncio.TimeoutError:
        status = "timeout"
    except Exception as exc:  # httpx's timeouts and connection errors, counted by name
        status = "timeout" if "Timeout" in type(exc).__name__ else "connection_error"
    return Result(klass, kind, status, time.perf_counter() - start)


def hostile_body(rng: random.Random, max_queue: int, big_due: bool) -> tuple[str, str, dict[str, Any] | bytes]:
    """(kind, path, body) of a request the server must refuse with a 4xx, without harm to the others."""
    if big_due:  # 300 optional integers: over the 5 s grammar budget; named afresh so the verdict is not cached
        tag = f"p{rng.randrange(10**9)}"
        schema = {"type": "object", "properties": {f"{tag}_{i}": {"type": "integer"} for i in range(300)}}
        return "big_schema", "/completions", {"model": MODEL, "prompt": "x", "max_tokens": 16,
                                              "response_format": _format(schema)}
    kind = rng.choice(("bad_pattern", "bad_pattern", "too_many_prompts", "malformed", "malformed",
                       "stream_options_without_stream"))
    if kind == "bad_pattern":
        schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": rng.choice(PATTERNS)}},
                  "required": ["s"]}
        chat = rng.random() < 0.5
        body: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "response_format": _format(schema),
                                "stream": rng.random() < 0.5}
        body.update({"messages": [{"role": "user", "content": "Give JSON."}]} if chat else {"prompt": "{"})
        return kind, "/chat/completions" if chat else "/completions", body
    if kind == "too_many_prompts":
        return kind, "/completions", {"model": MODEL, "prompt": [rng.choice(PROMPTS)] * (max_queue + 1),
                                      "max_tokens": 16}
    if kind == "malformed":
        return (kind, *rng.choice(MALFORMED))
    return kind, "/completions", {"model": MODEL, "prompt": rng.choice(PROMPTS), "max_tokens": 16,
                                  "stream_options": {"include_usage": True}}


async def abandon(url: str, rng: random.Random) -> Result:
    """A long request whose client leaves: a plain one closed after 0.2 s, or a stream after 2 chunks."""
    stream = rng.random() < 0.5
    kind = "dropped_stream" if stream else "closed_after_0.2s"
    body = json.dumps({"model": MODEL, "prompt": rng.choice(PROMPTS), "max_tokens": ABANDONED_TOKENS,
                       "temperature": 0.7, "stream": stream}).encode()
    where = urlsplit(url)
    head = (f"POST {where.path}/completions HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    start = time.perf_counter()
    status = "closed"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(where.hostname, where.port), 10)
    except (OSError, asyncio.TimeoutError):
        return Result("abandoned", kind, "connection_error", time.perf_counter() - start)
    try:
        writer.write(head + body)
        await writer.drain()
        if stream:
            status = await asyncio.wait_for(_two_chunks(reader), TIMEOUT)
        else:
            await asyncio.sleep(0.2)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        status = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection_error"
    finally:
        writer.close()  # the client leaves: the server should cancel the request
    return Result("abandoned", kind, status, time.perf_counter() - start)


async def _two_chunks(reader: asyncio.StreamReader) -> str:
    """Read a streamed answer until its second ``data:`` line; its status, or "closed" when it had fewer."""
    status = (await reader.readline()).split(b" ")[1].decode()
    chunks = 0
    while chunks < 2:
        line = await reader.readline()
        if not line:
            return status if status != "200" else "closed_early"
        chunks += line.startswith(b"data: ")
    return "closed" if status == "200" else status
