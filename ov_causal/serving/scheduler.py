"""The serving core: one GenAI ``ContinuousBatchingPipeline``, a thread running it and one feeding it, no torch.

Requests are submitted at any time from any thread and join the running batch at the next step; each
gets a ``Request`` that yields its tokens as they come (``Chunk``), then its finish reason and usage.
A request cancelled by its consumer is cancelled in GenAI at the next step, which frees its KV blocks.
Only ``openvino_genai`` (with the OpenVINO tokenizers in the folder) and jinja2 are imported.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..convert.cache_locks import hold_entry
from ..errors import APIError
from .adapters import SLICE_S, check_name, engine_adapters, group_config, must_switch, next_group
from .chat_template import ChatTemplate, load_chat_template
from .engine import (
    POLL,
    REASONS,
    STALL_TIMEOUT,
    context_length,
    engine_args,
    engine_message,
    int64,
    new_pipeline,
    pool_refusal,
    primer,
    trim_heap,
)
from .memory import MemoryWatch
from .request import END, Chunk, Request


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
        on_finish: called (in the feeding thread) with every request that ended, for metrics.
        memory_slack_mib: once idle, rebuild the pipeline when the process has grown by more than this since
            its first idle moment (GenAI never shrinks its KV-cache pool; see ``serving.memory``); None: never.
        stall_timeout: seconds the engine may go without advancing any running request before the core gives
            up on it: every request ends with 503, ``healthy`` turns False for good and ``on_stall`` is called
            (a stuck C++ step cannot be interrupted; the process has to be replaced).
        on_stall: called once (in the feeding thread) when the engine stalled; the single-process server exits.
        adapters: LoRA adapters served by name (``serving.adapters.load_adapters``), registered on the engine; a
            request picks one with ``submit(..., adapter=name)``. The core runs one adapter group at a time
            (``serving.adapters`` says how no group starves).
        adapter_slice: seconds a group keeps the engine while another group waits.
    """

    def __init__(self, folder: str | Path, *, device: str = "CPU", kv_cache_gb: int | None = None,
                 kv_blocks: int | None = None, max_running: int = 16, max_queue: int = 64,
                 prefix_caching: bool = True,
                 properties: dict[str, Any] | None = None, chat_template: str | None = None,
                 on_finish: Callable[[Request], None] | None = None, memory_slack_mib: int | None = 256,
                 stall_timeout: float = STALL_TIMEOUT, on_stall: Callable[[], None] | None = None,
                 adapters: dict[str, Any] | None = None, adapter_slice: float = SLICE_S) -> None:
        self.folder, self.device, self.properties = Path(folder), device, dict(properties or {})
        self._entry_use = hold_entry(self.folder)  # the size cap leaves the entry a server runs from alone
        self._engine_args, self.pool = engine_args(self.folder, device, properties or {}, kv_cache_gb, kv_blocks,
                                                   max_running, max_queue, prefix_caching)
        self.adapters = dict(adapters or {})
        self._engine_args[3].update(engine_adapters(self.adapters))
        self.adapter_slice = adapter_slice
        self.group: str | None = None  # the adapter group the engine runs (None: the base)
        self._group_since = time.monotonic()
        self.switches = 0  # times the engine went from one adapter group to another
        self._engine_lock = threading.Lock()  # held while the pipeline is rebuilt
        self.memory = MemoryWatch(memory_slack_mib)
        self.pipeline = new_pipeline(self._engine_args)
        self.tokenizer = self.pipeline.get_tokenizer()
        self.chat_template: ChatTemplate | None = load_chat_template(self.folder, chat_template)
        self.context = context_length(self.folder)
        self.max_running, self.max_queue, self.on_finish = max_running, max_queue, on_finish
        self._ids = itertools.count(1)  # 0 is the primer's: generate() numbers its requests from 0
        self._incoming: deque[Request] = deque()
        self._active: dict[int, Request] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._ending: set[int] = set()  # requests seen ending, read once more
        self.failure: BaseException | None = None
        self.stall_timeout, self.on_stall = stall_timeout, on_stall
        self.engine_failures = 0  # generate() calls that failed (the engine was rebuilt each time)
        self.rebuilding = self.stalled = False
        self._progress = time.monotonic()  # when a running request last advanced (or the engine went idle)
        self._open, self._go, self._pump_done = threading.Event(), threading.Event(), threading.Event()
        self._pumping, self._pump_error = False, None
        self._primer, self._primer_config, self._gate = primer(self._open, self._cond)
        self._pump_thread = threading.Thread(target=self._pump, name="ov_causal-serving-engine", daemon=True)
        self._thread = threading.Thread(target=self._run, name="ov_causal-serving-core", daemon=True)
        self._pump_thread.start()
        self._thread.start()

    def generation_config(self) -> Any:
        """A fresh copy of the folder's ``openvino_genai.GenerationConfig`` (its eos ids, defaults)."""
        with self._engine_lock:
            return self.pipeline.get_config()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        encoded = self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return [int(t) for t in encoded.input_ids.data[0]]

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def submit(self, prompt: str | Sequence[int], config: Any,
               loop: asyncio.AbstractEventLoop | None = None, adapter: str | None = None) -> Request:
        """Queue a request; it joins the running batch at the next step. A full queue raises APIError(429).

        Pass the consumer's event loop as ``loop`` to iterate the request with ``async for``, and the name of a
        served adapter as ``adapter`` (None: the base; an unknown name raises APIError(404)).
        """
        check_name(self.adapters, adapter)
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise APIError(400, "The prompt is empty after tokenization: send at least one token.", param="prompt")
        try:
            config.validate()
        except (RuntimeError, ValueError) as exc:
            raise APIError(400, f"Invalid generation settings: {exc}") from None
        request = Request(next(self._ids), ids, config, loop)
        request.adapter = adapter
        with self._cond:
            if self._closed or self.failure is not None or self.stalled:
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

    @property
    def healthy(self) -> bool:
        """Serving now: alive, not rebuilding its engine after a failure, not stalled."""
        return self.alive and not self.rebuilding and not self.stalled

    def kv_cache_usage(self) -> float:
        """Share of the KV-cache pool in use at the last step, 0..1."""
        with self._engine_lock:
            return float(self.pipeline.get_metrics().cache_usage) / 100.0

    def close(self) -> None:
        """Stop the engine threads; requests still running end with APIError(503)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=60)

    # GenAI's step() binding holds Python's GIL for the whole step (measured: a counting thread runs at 13% of
    # its speed beside a stepping thread, 91% beside a stepping process), so HTTP work in the same process
    # could only run between steps. Its generate() releases the GIL and steps while *any* request is in the
    # engine, including ones added meanwhile. So the pump thread runs generate() on a short primer request;
    # once the primer's first token is out (generate() has passed its idle check), this thread adds our
    # requests to the running engine and reads their tokens, polling between steps; the primer ends
    # within a few steps. generate() returns once the engine is empty.
    def _run(self) -> None:
        try:
            while self._wait():
                self._start_pump()
                if self._open.is_set():
                    self._admit()
                self._collect()
                if self._pump_done.is_set():
                    self._after_pump()
                self._watch()
        except BaseException as exc:  # noqa: BLE001 - reported to every request and to /health
            self.failure = exc
            error = APIError(500, f"The engine failed: {exc}", kind="server_error")
            for request in [*self._active.values(), *self._incoming]:
                self._end(request, error)
            raise
        finally:
            for request in [*self._active.values(), *self._incoming]:
                if request.handle is not None:
                    request.handle.cancel()
                self._end(request, APIError(503, "The server shut down.", kind="server_error"))
            self._stop_pump()

    def _wait(self) -> bool:
        """Sleep until there is work (or, while the engine runs, one poll interval); False once closed."""
        with self._cond:
            while not self._closed and not self._incoming and not self._active and not self._pumping:
                due = self.memory.wait_s()
                if due != 0:
                    self._cond.wait(due)
                    continue
                self._cond.release()  # requests may queue meanwhile (generation_config() waits for the engine)
                try:
                    self._rebuild()
                finally:
                    self._cond.acquire()
            if self._pumping and not self._pump_done.is_set():
                self._cond.wait(POLL)
            return not self._closed

    def _rebuild(self) -> None:
        """A new pipeline in place of one grown by a burst."""
        self._new_pipeline()
        self.memory.rebuilds += 1
        self.memory.busy()
        self.memory.baseline_mib = None  # measured again at the next idle moment: no rebuild after rebuild

    def _start_pump(self) -> None:
        if self._pumping or not self._incoming:
            return
        if self.adapters:
            with self._cond:
                group = next_group(r for r in self._incoming if not r.cancelled)
            self.switches += group != self.group
            self.group, self._group_since = group, time.monotonic()
            self._primer_config.adapters = group_config(self.adapters, group)
        self.memory.busy()
        self._pumping = True
        self._open.clear()
        self._go.set()

    def _pump(self) -> None:
        """The pump thread: generate() on the primer each time it is told to, with the GIL released."""
        while self._go.wait() and not self._closed:
            self._go.clear()
            try:
                self.pipeline.generate([self._primer], [self._primer_config], self._gate)
            except BaseException as exc:  # noqa: BLE001 - handed to the feeding thread
                self._pump_error = exc
            with self._cond:
                self._pump_done.set()
                self._cond.notify()

    def _stop_pump(self) -> None:
        self._closed = True
        self._go.set()
        self._pump_thread.join(timeout=60)

    def _after_pump(self) -> None:
        """generate() returned: read the last outputs; requests added after its last check go back in the queue."""
        self._pump_done.clear()
        self._open.clear()
        self._pumping = False
        if self._pump_error is not None:
            error, self._pump_error = self._pump_error, None
            self._recover(error)
            return
        self._collect(final=True)
        late = list(self._active.values())  # still running: added after generate() found the engine empty
        for request in late:
            request.handle.cancel()
        for _ in range(8):  # drop them from GenAI's waiting list (one step, with the GIL: rare)
            if not self.pipeline.has_non_finished_requests():
                break
            self.pipeline.step()
        self._active.clear()
        for request in late:
            request.handle = None
        with self._cond:
            self._incoming.extendleft(reversed(late))
        if not self._active and not self._incoming:
            trim_heap()  # give freed memory back after a burst
            self.memory.went_idle()

    def _admit(self) -> None:
        """Hand waiting requests to GenAI and cancel abandoned ones."""
        with self._cond:
            admitted = self._take()
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

            tensor = openvino.Tensor(int64([request.ids]))
            try:
                request.handle = self.pipeline.add_request(request.id, tensor, request.config)
            except (RuntimeError, ValueError) as exc:  # GenAI refuses this request's settings: it alone fails
                self._end(request, APIError(400, f"The engine refused the request: {exc}"))
                continue
            self._active[request.id] = request
        for request in self._active.values():
            if request.cancelled:
                request.handle.cancel()

    def _take(self) -> list[Request]:
        """The waiting requests of the running adapter group that fit in the batch (none once the group must
        hand the engine over: ``serving.adapters.must_switch``). Called holding ``_cond``."""
        if self.adapters and must_switch(self.group, self._incoming, time.monotonic() - self._group_since,
                                         self.adapter_slice):
            return []
        taken: list[Request] = []
        for request in list(self._incoming):
            if len(self._active) + len(taken) >= self.max_running:
                break
            if request.adapter == self.group:
                self._incoming.remove(request)
                taken.append(request)
        return taken

    def _collect(self, final: bool = False) -> None:
        """Pass every request's new tokens on; end the requests GenAI is done with.

        GenAI sets a request's status before it pushes its last outputs, so a request seen ending is read once
        more at the next poll (or at once when generate() has returned: everything is pushed then)."""
        import openvino_genai

        running = openvino_genai.GenerationStatus.RUNNING
        for rid, request in list(self._active.items()):
            status = request.handle.get_status()
            while request.handle.can_read():
                self._progress = time.monotonic()  # once per read, not per token
                for sequence_id, output in request.handle.read().items():
                    reason = REASONS.get(output.finish_reason.name)
                    request.push(Chunk(request.index_of(sequence_id), tuple(output.generated_ids), reason))
            if status == running:
                continue  # at the end (final), these are the late ones: _after_pump queues them again
            if not (final or rid in self._ending or request.cancelled):
                self._ending.add(rid)
                continue
            del self._active[rid]
            self._ending.discard(rid)
            self._end(request, None if status.name in ("FINISHED", "STOP") or request.cancelled
                      else pool_refusal(self.pool, request))
    def _end(self, request: Request, error: APIError | None) -> None:
        if request.finished is not None:
            return
        request.error, request.finished = error, time.monotonic()
        request.handle = None  # a finished request keeps nothing of the engine's (rebuilt after bursts)
        request.push(END)
        if self.on_finish is not None:
            self.on_finish(request)

    def _new_pipeline(self) -> None:
        """A new pipeline in place of the current one (dropped first: memory never holds both)."""
        with self._engine_lock:
            self.pipeline = None
            trim_heap()
            self.pipeline = new_pipeline(self._engine_args)

    def _recover(self, error: BaseException) -> None:
        """generate() failed (GenAI raises for one request's grammar, say): settle its requests one by one and
        rebuild the engine at once. A request with a response_format that had produced nothing is the suspect and
        fails with 400; the others go back in the queue once, to resume after the tokens they had (a request
        that cannot resume exactly, or fails a second time, gets 503 to retry)."""
        self.engine_failures += 1
        reason = engine_message(error)
        for request in self._active.values():
            request.handle = None
            if request.config.structured_output_config is not None and request.completion_tokens == 0:
                self._end(request, APIError(400, f"The engine could not run this request's response_format: "
                                            f"{reason}", param="response_format", code="invalid_response_format"))
            elif request.attempts == 0 and (request.completion_tokens == 0 or request.resume()):
                request.attempts += 1
                with self._cond:
                    self._incoming.appendleft(request)
            else:
                self._end(request, APIError(503, "The engine failed while running another request and was "
                                            "restarted; retry this request.", kind="server_error",
                                            code="engine_restarted"))
        self._active.clear()
        self._ending.clear()
        self.rebuilding = True
        try:
            self._new_pipeline()
        finally:
            self.rebuilding = False
        self._progress = time.monotonic()

    def _watch(self) -> None:
        """End everything when no running request advanced for ``stall_timeout`` seconds (the watchdog)."""
        if not self._active or self.stalled:
            self._progress = time.monotonic()
            return
        if time.monotonic() - self._progress < self.stall_timeout:
            return
        self.stalled = True
        error = APIError(503, f"The engine stopped advancing (no token for {self.stall_timeout:g} s); the server "
                         "is being replaced. Retry later.", kind="server_error", code="engine_stalled")
        with self._cond:
            waiting = list(self._incoming)
            self._incoming.clear()
        for request in [*self._active.values(), *waiting]:
            request.handle = None
            self._end(request, error)
        self._active.clear()
        if self.on_stall is not None:
            self.on_stall()
