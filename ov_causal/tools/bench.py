"""``ov-causal bench``: speed of each engine and preset, side by side in one run, with medians.

The engines are those of ``ov_causal.tools.runners`` (ours on both of its engines, raw GenAI, raw
optimum-intel, transformers + torch), all in this process on the same exported folder. Prompts are fresh
each run (a prefix cache cannot help) except in the repeated-prefix measurement, which reports that
case on its own.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..convert.ir import ir_mib
from ..convert.sources import DEMO_MODEL
from ..errors import OVCausalError
from ..ui.progress import stage
from .memory import MemoryJob, engine_peak_rss_mib, peak_rss_mib
from .reports import BenchReport, BenchRow, Measure
from .runners import ENGINES, check_engines, greedy, load_runner

THOROUGH = {"runs": 7, "num_prompts": 16}  # the defaults are the quick run


def memory_bandwidth_gb_s(size_mib: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth (read + write) of a large NumPy array, best of ``repeats``."""
    import numpy as np

    src = np.ones(size_mib * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def build_random_checkpoint(out: Path, hidden: int = 1024, layers: int = 16, vocab: int = 32000) -> Path:
    """A Llama-shaped checkpoint with random weights and the demo tokenizer (no Hub)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.75), num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=2048, bos_token_id=0, eos_token_id=0, pad_token_id=1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(DEMO_MODEL).save_pretrained(out)
    return out


class _Prompts:
    """Fresh prompts of a fixed length: random token ids, never repeated within a run."""

    def __init__(self, vocab: int, length: int, seed: int = 0) -> None:
        import torch

        self.generator = torch.Generator().manual_seed(seed)
        self.vocab, self.length = vocab, length

    def fresh(self, count: int = 1, prefix: Any = None) -> dict[str, Any]:
        import torch

        ids = torch.randint(2, self.vocab, (count, self.length), generator=self.generator)
        if prefix is not None:
            ids = torch.cat([prefix.expand(count, -1), ids[:, : max(1, self.length // 8)]], dim=1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _time(fn: Callable[..., Any], **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(**kwargs)
    return time.perf_counter() - start


def _measure_all(runners: dict[str, Any], prompts: _Prompts, new_tokens: int, runs: int, num_prompts: int,
                 prefix_engines: Sequence[str], tick: Callable[[], None] = lambda: None) -> dict[str, dict[str, Any]]:
    """Time every engine on the same fresh prompts, in a new shuffled order each run, so that no engine
    always runs first or right after another one (whose worker threads may still be spinning)."""
    import torch

    one, full = greedy(1), greedy(new_tokens)
    names = list(runners)
    times: dict[str, dict[str, list[float]]] = {n: {"ttft": [], "e2e": [], "prefix": []} for n in names}

    def round_robin(kind: str, options: dict[str, Any], engines: Sequence[str], prefix: Any = None) -> None:
        for i in range(runs):
            prompt = prompts.fresh(prefix=prefix)
            order = random.Random(i).sample(list(engines), len(engines))
            for name in order:
                times[name][kind].append(_time(runners[name].generate, **prompt, **options))
            tick()

    with torch.no_grad():
        warm = prompts.fresh()
        for name in names:
            runners[name].generate(**warm, **full)
        round_robin("ttft", one, names)
        round_robin("e2e", full, names)
        shared = prompts.fresh()["input_ids"]
        for name in prefix_engines:
            runners[name].generate(**prompts.fresh(prefix=shared), **one)
        if prefix_engines:
            round_robin("prefix", one, prefix_engines, prefix=shared)
        batch_times: dict[str, list[float]] = {n: [] for n in names}
        for i in range(max(1, min(runs, 3))):  # a batch call is long: up to three, shuffled like the rest
            batch = prompts.fresh(num_prompts)
            for name in random.Random(1000 + i).sample(names, len(names)):
                batch_times[name].append(_time(runners[name].generate, **batch, **full))
        throughput = {n: num_prompts * new_tokens / statistics.median(batch_times[n]) for n in names}
    results = {}
    for name in names:
        t = times[name]
        tpot = [max(1e-9, (e - statistics.median(t["ttft"])) / max(1, new_tokens - 1)) for e in t["e2e"]]
        results[name] = dict(
            ttft_s=Measure.of(t["ttft"]), ttft_prefix_s=Measure.of(t["prefix"]) if t["prefix"] else None,
            tpot_s=Measure.of(tpot), decode_tok_s=Measure.of([1 / x for x in tpot]), e2e_s=Measure.of(t["e2e"]),
            throughput_tok_s=throughput[name],
        )
    return results


def bench(
    model: str | os.PathLike[str],
    presets: Sequence[str] = ("int8",),
    *,
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    runs: int = 3,
    num_prompts: int = 4,
    engines: Sequence[str] = ENGINES,
    device: str = "CPU",
    ov_cache_dir: str | os.PathLike[str] | None = None,
    peak_rss: bool = False,
) -> BenchReport:
    """Measure each engine on each preset, side by side in this process.

    The defaults are a quick run (about a minute for a 135M model on 2 cores once its export is cached);
    ``runs=7, num_prompts=16`` is the thorough one (``THOROUGH``).

    Args:
        model: Hub id or checkpoint folder (see ``build_random_checkpoint`` for a local random one).
        presets: compression presets to measure; an unknown one or a failed load is reported and skipped.
        prompt_tokens: prompt length.
        new_tokens: tokens generated per call.
        runs: repetitions per measure (medians and min-max are reported); one warm-up run precedes them.
        num_prompts: prompts in the throughput measurement (one call with a list).
        engines: a subset of ENGINES.
        peak_rss: also measure each engine's peak RSS in a fresh process of its own (one load and two
            generate calls each: slower, but the only per-engine memory figure that means something).
    """
    from ..model.modeling import AutoModelForCausalLM

    check_engines(engines)
    rows: list[BenchRow] = []
    failures: dict[str, str] = {}
    common = dict(runs=runs, num_prompts=num_prompts, new_tokens=new_tokens)
    torch_measured = False
    for preset in presets:
        try:
            start = time.perf_counter()
            ours = AutoModelForCausalLM.from_pretrained(model, preset=preset, device=device, ov_cache_dir=ov_cache_dir)
            load_s = time.perf_counter() - start
        except (OVCausalError, OSError, RuntimeError) as exc:
            failures[str(preset)] = str(exc).splitlines()[0]
            continue
        size_mib = ir_mib(ours.model_save_dir)
        runners = {e: load_runner(e, ours.model_save_dir, device, ours.ov_config, model=ours)
                   for e in engines if e != "transformers"}
        sizes = {e: (preset, load_s, size_mib) for e in runners}
        if "transformers" in engines and not torch_measured:
            start = time.perf_counter()
            runners["transformers"] = load_runner("transformers", None, checkpoint=model)
            torch_mib = sum(p.numel() * p.element_size() for p in runners["transformers"].parameters()) / 2**20
            sizes["transformers"] = ("fp32 (torch)", time.perf_counter() - start, torch_mib)
            torch_measured = True
        prefix_engines = [e for e in ("ov_causal-genai", "llm-pipeline") if e in runners]
        rounds = runs * (3 if prefix_engines else 2)  # TTFT, end to end, repeated prefix: one step per round
        with stage(f"bench {preset}: {len(runners)} engines", total=rounds, unit="round") as bar:
            stats = _measure_all(runners, _Prompts(ours.config.vocab_size, prompt_tokens),
                                 prefix_engines=prefix_engines, tick=bar.update, **common)
        for engine, measured in stats.items():
            label, load, size = sizes[engine]
            rss = None
            if peak_rss:
                try:
                    job = MemoryJob(engine, os.fspath(ours.model_save_dir), os.fspath(model), device,
                                    dict(ours.ov_config), prompt_tokens, new_tokens, num_prompts)
                    rss = engine_peak_rss_mib(job)
                except (OVCausalError, OSError) as exc:
                    failures[f"{engine} {label} memory"] = str(exc)
            rows.append(BenchRow(engine, label, load_s=load, ir_mib=size, peak_rss_mib=rss, **measured))
        del ours, runners
    given = {"runs": runs, "num_prompts": num_prompts}
    thorough = tuple(f"--{key.replace('_', '-')} {value}" for key, value in THOROUGH.items() if given[key] < value)
    return BenchReport(str(model), prompt_tokens, new_tokens, runs, num_prompts, memory_bandwidth_gb_s(),
                       peak_rss_mib(), rows, failures, thorough)
