"""The serving core: one GenAI ``ContinuousBatchingPipeline`` and one stepping thread, no torch.

Requests are submitted at any time from any thread and join the running batch at the next step; each
gets a ``Request`` that yields its tokens as they come (``Chunk``), then its finish reason and usage.
A request cancelled by its consumer is cancelled in GenAI at the next step, which frees its KV blocks.
Only ``openvino_genai`` (with the OpenVINO tokenizers in the folder) and jinja2 are imported.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import APIError, ModelSourceError, OptionError
from .chat_template import ChatTemplate, load_chat_template
from .request import _END, Chunk, Request, SequenceResult

__all__ = ["Chunk", "Request", "SequenceResult", "ServingCore"]


class ServingCore:
    """One export folder served by continuous batching.

    Args:
        folder: an OpenVINO export folder with ``openvino_tokenizer.xml`` / ``openvino_detokenizer.xml``.
        device: OpenVINO device.
        kv_cache_gb: size of the KV-cache pool in GB (whole GB; GenAI's ``cache_size``).
        kv_blocks: size of the pool in KV blocks instead (GenAI's ``num_kv_blocks``). With neither, GenAI
            grows the pool with demand.
        max_running: most requests handed to the scheduler at once (its ``max_num_seqs``).
        max_queue: most requests waiting for a place; one more raises APIError(429).
        prefix_caching: reuse the KV blocks of a prompt prefix already seen (chat turns, system prompts).
        properties: OpenVINO properties for the model (``INFERENCE_NUM_THREADS``, ...).
        chat_template: Jinja text replacing the folder's chat template.
        on_finish: called (in the stepping thread) with every request that ended, for metrics.
    """

    def __init__(self, folder: str | Path, *, device: str = "CPU", kv_cache_gb: int | None = None,
                 kv_blocks: int | None = None, max_running: int = 16, max_queue: int = 64,
                 prefix_caching: bool = True,
                 properties: dict[str, Any] | None = None, chat_template: str | None = None,
                 on_finish: Callable[[Request], None] | None = None) -> None:
        import openvino_genai

        self.folder = Path(folder)
        _check_folder(self.folder)
        _check_numbers(kv_cache_gb, kv_blocks, max_running, max_queue, properties or {})
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching = prefix_caching
        scheduler.max_num_seqs = max_running
        if kv_cache_gb is not None:
            scheduler.cache_size = kv_cache_gb
        if kv_blocks is not None:
            scheduler.num_kv_blocks = kv_blocks
        self.pool = f"{kv_cache_gb} GB" if kv_cache_gb else f"{kv_blocks}-block" if kv_blocks else "the"
        self.pipeline = openvino_genai.ContinuousBatchingPipeline(str(self.folder), scheduler, device,
                                                                 dict(properties or {}))
        self.tokenizer = self.pipeline.get_tokenizer()
        self.chat_template: ChatTemplate | None = load_chat_template(self.folder, chat_template)
        self.context = _context_length(self.folder)
        self.max_running, self.max_queue, self.on_finish = max_running, max_queue, on_finish
        self._ids = itertools.count()
        self._incoming: deque[Request] = deque()
        self._active: dict[int, Request] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ov_causal-serving-core", daemon=True)
        self._thread.start()

    # -- requests ---------------------------------------------------------------------------------
    def generation_config(self) -> Any:
        """A fresh copy of the folder's ``openvino_genai.GenerationConfig`` (its eos ids, defaults)."""
        return self.pipeline.get_config()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        encoded = self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return [int(t) for t in encoded.input_ids.data[0]]

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def submit(self, prompt: str | Sequence[int], config: Any,
               loop: asyncio.AbstractEventLoop | None = None) -> Request:
        """Queue a request; it joins the running batch at the next step. A full queue raises APIError(429).

        Pass the consumer's event loop as ``loop`` to iterate the request with ``async for``.
        """
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise APIError(400, "The prompt is empty after tokenization: send at least one token.", param="prompt")
        try:
            config.validate()
        except (RuntimeError, ValueError) as exc:
            raise APIError(400, f"Invalid generation settings: {exc}") from None
        request = Request(next(self._ids), ids, config, loop)
        with self._cond:
            if self._closed or self.failure is not None:
                raise APIError(503, "The model is not serving (it was shut down or failed); retry later.",
                               kind="server_error", code="unavailable")
            if len(self._incoming) >= self.max_queue:
                raise APIError(429, f"The server is busy: {self.max_queue} requests are already waiting. "
                               "Retry in a moment.", kind="rate_limit_error", code="queue_full")
            self._incoming.append(request)
            self._cond.notify()
        return request

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def queued(self) -> int:
        return len(self._incoming)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def kv_cache_usage(self) -> float:
        """Share of the KV-cache pool in use at the last step, 0..1."""
        return float(self.pipeline.get_metrics().cache_usage) / 100.0

    def close(self) -> None:
        """Stop the stepping thread; requests still running end with APIError(503)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=60)

    # -- the stepping thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._admit():
                if self._active:
                    started = time.perf_counter()
                    self.pipeline.step()
                    self._collect()
                    self._let_readers_catch_up(time.perf_counter() - started)
                    if not self._active:
                        _trim_heap()  # give freed memory back after a burst
        except BaseException as exc:  # noqa: BLE001 - reported to every request and to /health
            self.failure = exc
            error = APIError(500, f"The engine failed: {exc}", kind="server_error")
            for request in [*self._active.values(), *self._incoming]:
                self._end(request, error)
            raise
        finally:
            for request in [*self._active.values(), *self._incoming]:
                self._end(request, APIError(503, "The server shut down.", kind="server_error"))

    def _let_readers_catch_up(self, step_seconds: float) -> None:
        """Wait (up to a step's time) while readers are behind: GenAI's step() holds the GIL, so the
        threads reading the requests (an event loop sending pieces, health checks) only run between steps."""
        deadline = time.perf_counter() + min(_MAX_PAUSE, step_seconds)
        time.sleep(0)  # one turn for the other threads (requests arriving) even when no reader is behind
        while time.perf_counter() < deadline and any(r.backlog for r in self._active.values()):
            time.sleep(0.0005)

    def _admit(self) -> bool:
        """Hand waiting requests to GenAI and cancel abandoned ones; False once closed."""
        with self._cond:
            while not self._closed and not self._incoming and not self._active:
                self._cond.wait()
            if self._closed:
                return False
            admitted = []
            while self._incoming and len(self._active) + len(admitted) < self.max_running:
                admitted.append(self._incoming.popleft())
            dropped = [r for r in self._incoming if r.cancelled]
            for request in dropped:
                self._incoming.remove(request)
        for request in dropped:
            self._end(request, None)
        for request in admitted:
            if request.cancelled:
                self._end(request, None)
                continue
            import openvino

            tensor = openvino.Tensor(_int64([request.ids]))
            try:
                request.handle = self.pipeline.add_request(request.id, tensor, request.config)
            except (RuntimeError, ValueError) as exc:  # GenAI refuses this request's settings: it alone fails
                self._end(request, APIError(400, f"The engine refused the request: {exc}"))
                continue
            self._active[request.id] = request
        for request in self._active.values():
            if request.cancelled:
                request.handle.cancel()
        return True

    def _collect(self) -> None:
        import openvino_genai

        running = openvino_genai.GenerationStatus.RUNNING
        for rid, request in list(self._active.items()):
            status = request.handle.get_status()
            while request.handle.can_read():
                for sequence_id, output in request.handle.read().items():
                    reason = _REASONS.get(output.finish_reason.name)
                    request._push(Chunk(request._index(sequence_id), tuple(output.generated_ids), reason))
            if status != running:
                del self._active[rid]
                self._end(request, None if status.name == "FINISHED" or request.cancelled else self._refusal(request))

    def _refusal(self, request: Request) -> APIError:
        return APIError(400, f"The request needs more than {self.pool} KV-cache pool ({request.prompt_tokens} prompt "
                        f"tokens, max_tokens={request.config.max_new_tokens}, n={request.config.num_return_sequences}"
                        "). Send a shorter prompt or lower max_tokens/n, or start the server with a larger "
                        "--kv-cache-gb.", code="kv_cache_exceeded")

    def _end(self, request: Request, error: APIError | None) -> None:
        if request.finished is not None:
            return
        request.error, request.finished = error, time.monotonic()
        request._push(_END)
        if self.on_finish is not None:
            self.on_finish(request)


_MAX_PAUSE = 0.2  # seconds the stepping thread waits at most for slow readers after a step
_REASONS = {"STOP": "stop", "LENGTH": "length", "TOOL_CALL": "stop"}


def _int64(rows: list[list[int]]) -> Any:
    import numpy

    return numpy.asarray(rows, dtype=numpy.int64)


def _trim_heap() -> None:
    """glibc keeps freed arenas; malloc_trim returns them to the system (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_folder(folder: Path) -> None:
    missing = [n for n in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
               if not (folder / n).is_file()]
    if missing:
        raise ModelSourceError(f"{folder} is not a GenAI-ready export folder: {', '.join(missing)} missing. "
                               "Export it with ov_causal (save_pretrained writes the OpenVINO tokenizers).")


def _check_numbers(kv_cache_gb: int | None, kv_blocks: int | None, max_running: int, max_queue: int,
                   properties: dict[str, Any]) -> None:
    if kv_cache_gb is not None and kv_blocks is not None:
        raise OptionError(f"kv_cache_gb={kv_cache_gb!r} and kv_blocks={kv_blocks!r} both size the KV-cache pool: "
                          "pass one of them.")
    for name, value, low in (("kv_cache_gb", kv_cache_gb, 1), ("kv_blocks", kv_blocks, 1),
                             ("max_running", max_running, 1), ("max_queue", max_queue, 0)):
        if name.startswith("kv") and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise OptionError(f"{name}={value!r} is not valid: pass a whole number of at least {low}.")
    if str(properties.get("INFERENCE_NUM_THREADS")) == "1":  # checked here: GenAI 2026.4 crashes (SIGFPE)
        raise OptionError("INFERENCE_NUM_THREADS=1 crashes OpenVINO GenAI's continuous batching; use 2 or more, "
                          "or leave it unset.")


def _context_length(folder: Path) -> int | None:
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None
