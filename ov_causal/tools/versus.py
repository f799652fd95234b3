"""``ov-causal bench MODEL --against llama.cpp``: time to answer per workload class, OpenVINO against llama.cpp
on the same weights, the same threads, side by side in one run.

The recipe (``bench_against``): find or make the GGUF file -> load llama.cpp on it, OpenVINO GenAI on the same
file, and our presets of the checkpoint (the nearest bits) -> time each workload class on every engine, in
rotating order, medians of ``runs`` -> the report. The classes are in ``workloads``; llama.cpp's side in
``llamacpp``; the servers in ``servers``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import OptionError, OVCausalError
from ..ui.progress import stage
from .bench import memory_bandwidth_gb_s
from .llamacpp import GGUFInfo, LlamaCppRunner, convert_to_gguf, llama_cpp, read_gguf
from .reports import Measure
from .runners import greedy
from .versus_report import REFERENCE, EngineInfo, VersusReport, WorkloadRow
from .versus_workloads import (
    WORKLOADS,
    TokenPrompts,
    Workload,
    chat_messages,
    get_workloads,
    median,
    rotations,
    run_chat,
)

AGAINST = ("llama.cpp",)
GGUF_ENGINE = "openvino-gguf"


class OpenVINORunner:
    """An OpenVINO engine with the runners' interface: ``generate(ids, n) -> new ids``, ``generate_list``."""

    def __init__(self, engine: str, weights: str, weight_bytes: int, call: Callable[[Any, int], list[list[int]]],
                 serve_as: dict[str, Any]) -> None:
        self.engine, self.weights, self.weight_bytes = engine, weights, weight_bytes
        self._call = call  # ([batch, length] int64 ids, new tokens) -> each row's new ids
        self.serve_as = serve_as  # how ``servers.start_ours`` starts this engine behind our server

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return self._call([ids], new_tokens)[0]

    def generate_list(self, prompts: list[list[int]], new_tokens: int) -> None:
        self._call(prompts, new_tokens)  # one call: GenAI runs the rows as separate requests, batched per step

    def close(self) -> None:
        self._call = None  # type: ignore[assignment]


def load_gguf_openvino(gguf: GGUFInfo, threads: int) -> OpenVINORunner:
    """OpenVINO GenAI on the GGUF file itself (its own quantization kept).

    The one place that loads a GGUF on our side: once ``from_pretrained`` reads GGUF files (issue 24, item 1),
    this becomes ``_preset_runner(gguf.path, None, threads)``.
    """
    import numpy as np
    import openvino_genai

    from ..model.backends import tokenized_inputs

    pipe = openvino_genai.LLMPipeline(gguf.path, "CPU", INFERENCE_NUM_THREADS=threads)

    def call(prompts: Any, new_tokens: int) -> list[list[int]]:
        config = openvino_genai.GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                 ignore_eos=True)
        return [list(t) for t in pipe.generate(tokenized_inputs(np.asarray(prompts)), config).tokens]

    return OpenVINORunner(GGUF_ENGINE, f"{gguf.file_type} (the GGUF, GenAI)", gguf.tensor_bytes, call,
                          {"model": gguf.path})


def _preset_runner(checkpoint: str | os.PathLike[str], preset: str | None, threads: int) -> OpenVINORunner:
    """ov_causal's ``from_pretrained(checkpoint, preset=...)`` on ``threads`` threads, called through ``generate``."""
    import torch

    from ..convert.ir import ir_mib
    from ..model.modeling import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, preset=preset,
                                                 ov_config={"INFERENCE_NUM_THREADS": str(threads)})

    def call(prompts: Any, new_tokens: int) -> list[list[int]]:
        ids = torch.tensor(prompts, dtype=torch.long)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **greedy(new_tokens))
        return out[:, ids.shape[1]:].tolist()

    label = preset or "default"
    return OpenVINORunner(f"ov_causal {label}", f"{label} (OpenVINO IR)", int(ir_mib(model.model_save_dir) * 2**20),
                          call, {"model": os.fspath(checkpoint), "preset": preset})


def _time(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure(workload: Workload, runners: dict[str, Any], prompts: TokenPrompts, runs: int,
            tick: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Each engine's seconds per answer of ``workload``, ``runs`` times, on the same fresh prompts in a run."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    new = workload.new_tokens
    for order in rotations(list(runners), runs):
        if workload.name == "chat":
            messages = chat_messages(workload, prompts)
            for name in order:
                times[name].append(median(run_chat(runners[name].generate, messages, new, time.perf_counter)))
        elif workload.prompts > 1:
            batch = prompts.many(workload.prompts, workload.prompt_tokens)
            for name in order:
                times[name].append(_time(runners[name].generate_list, batch, new))
        else:
            ids = prompts.ids(workload.prompt_tokens)
            for name in order:
                times[name].append(_time(runners[name].generate, ids, new))
        tick()
    return times


def measure_users(workload: Workload, runners: dict[str, Any], gguf: GGUFInfo, threads: int, runs: int,
                  ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Concurrent users through llama-server and our server for each OpenVINO engine (rotating order)."""
    from . import servers  # HTTP clients and subprocesses: imported only for this class

    started: dict[str, servers.Server] = {}
    skipped: dict[str, str] = {}
    context = workload.context_tokens() * 2
    try:
        llama = servers.start_llama_server(gguf.path, threads, workload.prompts, context)
        if llama is None:
            why = f"{servers.LLAMA_SERVER} is not on the PATH (build it from llama.cpp's sources to compare servers)"
            return {}, dict.fromkeys(runners, why)
        started[REFERENCE] = llama
        for name, runner in runners.items():
            if name != REFERENCE:
                started[name] = servers.start_ours(threads=threads, **runner.serve_as)
        for name, server in list(started.items()):
            try:
                server.wait_ready()
            except OVCausalError as exc:
                skipped[name] = str(exc)
                server.stop()
                del started[name]
        times: dict[str, list[float]] = {name: [] for name in started}
        for i, order in enumerate(rotations(list(started), runs + 1)):
            texts = servers.text_prompts(workload.prompts, workload.prompt_tokens * 3 // 4, seed=i)
            for name in order:
                seconds = servers.concurrent_users(started[name], texts, workload.new_tokens)
                if i:  # the first round warms both servers up
                    times[name].append(seconds)
        return times, skipped
    finally:
        for server in started.values():
            server.stop()


def _gguf_file(model: str, gguf: str | os.PathLike[str] | None, gguf_type: str, converter: Any, tmp: str) -> str:
    if gguf is not None:
        return os.fspath(gguf)
    if model.lower().endswith(".gguf"):
        return model
    return os.fspath(convert_to_gguf(model, Path(tmp) / f"model.{gguf_type}.gguf", gguf_type, converter))


def _load_engines(checkpoint: str | None, info: GGUFInfo, presets: Sequence[str], threads: int, context: int,
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    runners: dict[str, Any] = {REFERENCE: LlamaCppRunner(info, threads, context)}
    failures: dict[str, str] = {}
    loaders = [(GGUF_ENGINE, lambda: load_gguf_openvino(info, threads))]
    loaders += [(f"ov_causal {p}", lambda p=p: _preset_runner(checkpoint, p, threads)) for p in presets]
    for name, load in loaders:
        try:
            runner = load()
            runners[runner.engine] = runner
        except (OVCausalError, OSError, RuntimeError) as exc:
            failures[name] = str(exc).splitlines()[0]
    return runners, failures


def _presets(checkpoint: str | None, info: GGUFInfo, presets: Sequence[str] | None) -> list[str]:
    if checkpoint is None:
        if presets:
            raise OptionError("presets need the model's checkpoint: pass the checkpoint as MODEL and the GGUF file "
                              "as gguf= (--gguf FILE), or leave presets out to compare on the GGUF file alone.")
        return []
    if presets is None:
        return [info.paired_preset] if info.paired_preset else []
    return list(presets)


def _check(against: str, runs: int, threads: int | None) -> int:
    if against not in AGAINST:
        raise OptionError(f"against={against!r}: the engines bench compares with are {', '.join(AGAINST)}.")
    if runs < 1:
        raise OptionError(f"runs={runs}: pass at least 1.")
    if threads is not None and threads < 1:
        raise OptionError(f"threads={threads}: pass at least 1 (default: the CPUs this process may use).")
    return threads or len(os.sched_getaffinity(0))


def bench_against(
    model: str | os.PathLike[str],
    against: str = "llama.cpp",
    *,
    gguf: str | os.PathLike[str] | None = None,
    presets: Sequence[str] | None = None,
    gguf_type: str = "q8_0",
    threads: int | None = None,
    runs: int = 3,
    workloads: Sequence[str] = tuple(WORKLOADS),
    users: int = 4,
    converter: str | os.PathLike[str] | None = None,
) -> VersusReport:
    """Time to answer per workload class on OpenVINO and on llama.cpp, on the same weights and threads.

    Args:
        model: a checkpoint (folder or Hub id) or a ``.gguf`` file.
        against: the other engine: ``"llama.cpp"`` (through llama-cpp-python, the ``llamacpp`` extra).
        gguf: the GGUF file of ``model``'s weights (default: ``model`` if it is one, else converted from the
            checkpoint with llama.cpp's ``convert_hf_to_gguf.py`` to ``gguf_type``).
        presets: our presets of the checkpoint to measure beside GenAI on the GGUF (default: the one with the
            GGUF's bits: Q8_0 -> int8, Q4_0 -> int4_sym_g64, Q4_1 -> int4_asym_g64).
        gguf_type: the type a conversion writes: q8_0, f16, f32 (the converter alone), q4_0, q4_1, q4_k_m (also
            needs ``llama-quantize`` on the PATH).
        threads: threads of every engine (default: the CPUs this process may use).
        runs: timed answers per class and engine (after a warm-up); medians are reported.
        workloads: a subset of ``long-prompt, chat, long-generation, list, users``.
        users: concurrent clients of the ``users`` class (needs ``llama-server`` on the PATH).
        converter: the path of ``convert_hf_to_gguf.py`` when it is not on the PATH.

    Example:
        >>> report = bench_against("my-checkpoint", gguf="my-model.Q8_0.gguf", runs=5)  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    threads = _check(against, runs, threads)
    chosen = get_workloads(list(workloads), users)
    llama_cpp()  # the missing extra is reported before any conversion or load
    model = os.fspath(model)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ov_causal-versus-") as tmp:
        info = read_gguf(_gguf_file(model, gguf, gguf_type, converter, tmp))
        checkpoint = None if model.lower().endswith(".gguf") else model
        wanted = _presets(checkpoint, info, presets)
        context = min(info.context_length, max(w.context_tokens() for w in chosen) + 16)
        runners, failures = _load_engines(checkpoint, info, wanted, threads, context)
        rows = _measure_rows(chosen, runners, info, threads, runs)
    engines = [EngineInfo(r.engine, r.weights, r.weight_bytes / 2**20, threads) for r in runners.values()]
    for runner in runners.values():
        runner.close()
    pairing = (f"llama.cpp and {GGUF_ENGINE} read the same file ({Path(info.path).name}, {info.file_type}); "
               + ("; ".join(f"ov_causal {p}: the checkpoint with our preset {p}" for p in wanted)
                  if wanted else "no preset of ours measured"))
    return VersusReport(model, info.path, threads, runs, engines, rows, memory_bandwidth_gb_s(),
                        (load_before, os.getloadavg()[0]), pairing, failures)


def _measure_rows(chosen: list[Workload], runners: dict[str, Any], info: GGUFInfo, threads: int, runs: int,
                  ) -> list[WorkloadRow]:
    prompts = TokenPrompts(info.vocab_size)
    for runner in runners.values():  # warm-up: first calls allocate and compile
        runner.generate(prompts.ids(64), 4)
        runner.generate_list(prompts.many(2, 16), 4)
    rows = []
    with stage(f"bench against llama.cpp: {len(runners)} engines", total=len(chosen) * runs, unit="run") as bar:
        for workload in chosen:
            skipped: dict[str, str] = {}
            if workload.context_tokens() > info.context_length:
                why = f"needs {workload.context_tokens()} tokens of context, the model has {info.context_length}"
                times, skipped = {}, dict.fromkeys(runners, why)
            elif workload.name == "users":
                times, skipped = measure_users(workload, runners, info, threads, runs)
            else:
                times = measure(workload, runners, prompts, runs, bar.update)
            seconds = {name: Measure.of(times[name]) if times.get(name) else None for name in runners}
            rows.append(WorkloadRow(workload.name, workload.title, workload.describe(), seconds,
                                    workload.new_tokens * workload.prompts, skipped))
    return rows
