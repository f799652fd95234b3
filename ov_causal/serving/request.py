"""A request submitted to the serving core: its token chunks as they come, then its end (see ``serving.scheduler``)."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import APIError


@dataclass(frozen=True)
class Chunk:
    """New tokens of one returned sequence (``index`` < n); ``finish_reason`` is set on its last chunk."""

    index: int
    tokens: tuple[int, ...]
    finish_reason: str | None = None


@dataclass(frozen=True)
class SequenceResult:
    """One finished sequence: all its tokens and why it ended ("stop" or "length")."""

    tokens: list[int]
    finish_reason: str


END = object()  # the last item of a request's queue


class Request:
    """One submitted request: iterate it (``for chunk in r`` / ``async for chunk in r``) or call ``result()``.

    Leave it with ``cancel()`` (or a ``with`` block) when its consumer goes away: the core cancels it at
    the next step. ``prompt_tokens``, ``completion_tokens`` and the timings are kept for usage and metrics.
    """

    def __init__(self, rid: int, ids: list[int], config: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.id, self.ids, self.config, self._loop = rid, ids, config, loop
        self.limit: int = config.max_new_tokens  # max_new_tokens as asked (a resumed request asks the rest)
        self.generated: list[int] = []  # the first sequence's tokens so far, to resume it on a new engine
        self._queue: Any = asyncio.Queue() if loop is not None else queue.SimpleQueue()
        self.prompt_tokens, self.completion_tokens = len(ids), 0
        self.submitted = time.monotonic()
        self.first_token: float | None = None
        self.finished: float | None = None
        self.error: APIError | None = None
        self.cancelled = False
        self.attempts = 0  # times the engine failed under it and it was queued again
        self.handle: Any = None
        self.adapter: str | None = None  # the served LoRA adapter it runs with (None: the base)
        self.pushed = self.taken = 0  # chunks handed over / read: each counter written by one thread only
        self._seen: dict[int, int] = {}  # GenAI sequence id -> our index

    def cancel(self) -> None:
        """Stop this request (safe from any thread, at any time, more than once)."""
        self.cancelled = True

    def __enter__(self) -> Request:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.finished is None:
            self.cancel()

    @property
    def backlog(self) -> int:
        """Chunks generated and not read yet (0 for a request nobody reads any more)."""
        return 0 if self.cancelled else self.pushed - self.taken

    def __iter__(self) -> Iterator[Chunk]:
        while (item := self._queue.get()) is not END:
            self.taken += 1
            yield item
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        while (item := await self._queue.get()) is not END:
            self.taken += 1
            yield item
        if self.error is not None:
            raise self.error

    def result(self) -> list[SequenceResult]:
        """Block until the request ends; its sequences in order."""
        return _assemble(self, list(self))

    async def aresult(self) -> list[SequenceResult]:
        return _assemble(self, [chunk async for chunk in self])

    def push(self, item: object) -> None:
        """Hand the consumer a Chunk, or END (called by the core's threads)."""
        if isinstance(item, Chunk):
            self.pushed += 1
            self.completion_tokens += len(item.tokens)
            if item.index == 0:
                self.generated.extend(item.tokens)
            if self.first_token is None and item.tokens:
                self.first_token = time.monotonic()
        if self._loop is None:
            self._queue.put(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the consumer's event loop is gone: nobody will read
            self.cancelled = True

    def resume(self) -> bool:
        """Make this request continue after its tokens so far, on a new engine (the one that produced them
        failed). False when that cannot be exact: several sequences, or a grammar whose state would restart."""
        if self.config.num_return_sequences != 1 or self.config.structured_output_config is not None:
            return False
        self.ids = self.ids + self.generated
        self.config.max_new_tokens = self.limit - len(self.generated)
        self.generated = []
        return self.config.max_new_tokens > 0

    def index_of(self, sequence_id: int) -> int:
        """The position (0, 1, ...) of GenAI's sequence id among this request's returned sequences."""
        return self._seen.setdefault(sequence_id, len(self._seen))


def _assemble(request: Request, chunks: list[Chunk]) -> list[SequenceResult]:
    n = max(request.config.num_return_sequences, 1 + max((c.index for c in chunks), default=0))
    tokens: list[list[int]] = [[] for _ in range(n)]
    reasons: list[str | None] = [None] * n
    for chunk in chunks:
        tokens[chunk.index].extend(chunk.tokens)
        reasons[chunk.index] = chunk.finish_reason or reasons[chunk.index]
    limit = request.limit
    return [SequenceResult(t, r or ("length" if len(t) >= limit else "stop")) for t, r in zip(tokens, reasons)]
