"""What stands between clients and a replica's API: a bounded request body, and Prometheus metrics.

``BodyGuard`` reads a request's body before the app sees it, within a size limit (413) and a time limit
(408), so a slow or stalled client holds nothing for long and an oversized prompt is refused before it
is tokenized. ``Metrics`` keeps the replica's counters in a registry of its own (``prometheus_client``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import APIError
from .request import Request
from .scheduler import ServingCore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _TooLarge(Exception):
    pass


class BodyGuard:
    """ASGI middleware: the whole body within ``max_bytes`` and ``timeout`` seconds, or an OpenAI error.

    It also counts every ``/v1/`` answer by status in ``metrics``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float, headers: dict[str, str],
                 metrics: Metrics | None = None) -> None:
        self.app, self.max_bytes, self.timeout, self.headers, self.metrics = app, max_bytes, timeout, headers, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is not None and scope["path"].startswith("/v1/"):
            send = self.metrics.counting(send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, self._too_large(int(declared)))
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout)
        except TimeoutError:
            await self._refuse(send, APIError(408, f"The request body did not arrive within {self.timeout:g} s; "
                                              "send it at once.", code="request_timeout"))
            return
        except _TooLarge:
            await self._refuse(send, self._too_large(None))
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # what comes next is the disconnect

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            part = message.get("body", b"")
            size += len(part)
            if size > self.max_bytes:
                raise _TooLarge
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self, size: int | None) -> APIError:
        given = f"{size} bytes" if size is not None else "more"
        return APIError(413, f"The request body is too large: {given}, the limit is {self.max_bytes} bytes. "
                        "Send a shorter prompt (the limit is the server's max_body_bytes).", code="body_too_large")

    async def _refuse(self, send: Send, error: APIError) -> None:
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *((k.encode(), v.encode()) for k, v in self.headers.items())]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Metrics:
    """The replica's Prometheus metrics (``prometheus_client``, a registry per replica)."""

    def __init__(self, core: ServingCore) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds, open fds
        self.requests = Counter("ov_causal_requests", "HTTP answers to /v1/ requests, by status code",
                                ["status"], registry=registry)
        self.prompt_tokens = Counter("ov_causal_prompt_tokens", "Prompt tokens of finished requests",
                                     registry=registry)
        self.generation_tokens = Counter("ov_causal_generation_tokens", "Tokens generated", registry=registry)
        self.by_adapter = Counter("ov_causal_adapter_requests", "Finished requests by the LoRA adapter they ran with "
                                  "(adapter=\"\" for the base)", ["adapter"], registry=registry)
        for name in ("", *core.adapters):
            self.by_adapter.labels(name)  # every served adapter shown from the start, at 0
        running = Gauge("ov_causal_running_requests", "Requests in the running batch", registry=registry)
        running.set_function(lambda: core.running)
        queued = Gauge("ov_causal_queued_requests", "Requests waiting for a place in the batch", registry=registry)
        queued.set_function(lambda: core.queued)
        kv = Gauge("ov_causal_kv_cache_usage_ratio", "Share of the KV-cache pool held by running requests",
                   registry=registry)
        kv.set_function(lambda: core.kv_cache_usage() if core.running else 0.0)
        rebuilds = Gauge("ov_causal_engine_rebuilds", "Pipelines rebuilt to give back memory a burst took "
                         "(see process_resident_memory_bytes)", registry=registry)
        rebuilds.set_function(lambda: core.memory.rebuilds)
        failures = Gauge("ov_causal_engine_failures", "Engine steps that failed (the engine was rebuilt at once; "
                         "their requests were settled one by one)", registry=registry)
        failures.set_function(lambda: core.engine_failures)
        self.ttft = Histogram("ov_causal_time_to_first_token_seconds", "Time from submission to the first token",
                              buckets=_LATENCY_BUCKETS, registry=registry)
        self.latency = Histogram("ov_causal_request_latency_seconds", "Time from submission to the end",
                                 buckets=_LATENCY_BUCKETS, registry=registry)

    def finished(self, request: Request) -> None:
        """Account one ended request (the core calls it from its feeding thread)."""
        self.prompt_tokens.inc(request.prompt_tokens)
        self.generation_tokens.inc(request.completion_tokens)
        self.by_adapter.labels(request.adapter or "").inc()
        if request.first_token is not None:
            self.ttft.observe(request.first_token - request.submitted)
        if request.finished is not None and request.error is None and not request.cancelled:
            self.latency.observe(request.finished - request.submitted)

    def counting(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.requests.labels(str(message["status"])).inc()
            await send(message)

        return wrapped

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
