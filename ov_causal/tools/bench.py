"""``ov-causal bench``: speed of each engine and preset, side by side in one run, with medians.

Engines: ov_causal on GenAI (``backend='genai'``), ov_causal on the transformers loop
(``backend='optimum'``), raw ``openvino_genai.LLMPipeline`` and raw optimum-intel
``OVModelForCausalLM`` on the same folder, and plain transformers + torch (fp32). Prompts are fresh
each run (a prefix cache cannot help) except in the repeated-prefix measurement, which reports that
case on its own.
"""

from __future__ import annotations

import html
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..build.ir import ir_mib
from ..build.sources import DEMO_MODEL
from ..errors import OVCausalError
from ..ui.progress import stage
from .memory import engine_peak_rss_mib, peak_rss_mib

ENGINES = ("ov_causal-genai", "ov_causal-optimum", "llm-pipeline", "optimum-intel", "transformers")


@dataclass(frozen=True)
class Measure:
    """Median and range of repeated timings (seconds, or tokens/s for rates)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Measure:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class BenchRow:
    engine: str
    preset: str
    ttft_s: Measure
    ttft_prefix_s: Measure | None
    tpot_s: Measure
    decode_tok_s: Measure
    e2e_s: Measure
    throughput_tok_s: float
    load_s: float
    ir_mib: float
    peak_rss_mib: float | None = None  # a fresh process running only this engine (bench(peak_rss=True))


@dataclass(frozen=True)
class BenchReport:
    model: str
    prompt_tokens: int
    new_tokens: int
    runs: int
    num_prompts: int
    bandwidth_gb_s: float
    peak_rss_mib: float
    rows: list[BenchRow] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        head = (f"{'engine':20s} {'preset':16s} {'TTFT ms':>9s} {'prefix ms':>9s} {'TPOT ms':>8s} {'tok/s':>7s} "
                f"{'range':>13s} {'batch tok/s':>11s} {'load s':>7s} {'ceiling':>8s}")
        with_rss = any(r.peak_rss_mib is not None for r in self.rows)
        head += f" {'RSS MiB':>8s}" if with_rss else ""
        lines = [head, "-" * len(head)]
        for r in self.rows:
            prefix = f"{1000 * r.ttft_prefix_s.median:9.1f}" if r.ttft_prefix_s else f"{'-':>9s}"
            ceiling = self.bandwidth_gb_s * 1e9 / (r.ir_mib * 2**20) if r.ir_mib else float("nan")
            lines.append(
                f"{r.engine:20s} {r.preset:16s} {1000 * r.ttft_s.median:9.1f} {prefix} {1000 * r.tpot_s.median:8.2f} "
                f"{r.decode_tok_s.median:7.1f} {r.decode_tok_s.low:6.1f}-{r.decode_tok_s.high:<6.1f} "
                f"{r.throughput_tok_s:11.1f} {r.load_s:7.2f} {r.decode_tok_s.median / ceiling:7.0%}"
                + (f" {r.peak_rss_mib or float('nan'):8.0f}" if with_rss else "")
            )
        lines.append(
            f"({self.prompt_tokens}-token fresh prompts, {self.new_tokens} new tokens, median of {self.runs}; batch: "
            f"{self.num_prompts} prompts in one call, median of {max(1, min(self.runs, 3))}; "
            f"memory bandwidth {self.bandwidth_gb_s:.1f} GB/s; 'ceiling' = share of the "
            f"bandwidth-bound decode limit bandwidth / IR size; this process's peak RSS, every engine loaded: "
            f"{self.peak_rss_mib:.0f} MiB" + ("; RSS MiB = peak of a process running that engine alone)" if with_rss
                                             else ")")
        )
        for name, error in self.failures.items():
            lines.append(f"FAILED {name}: {error}")
        return "\n".join(lines)

    def ratios(self, preset: str) -> dict[str, float]:
        """Decode speed of each engine relative to raw optimum-intel for one preset."""
        rows = {r.engine: r for r in self.rows if r.preset in (preset, "fp32 (torch)")}
        base = rows.get("optimum-intel")
        return {e: r.decode_tok_s.median / base.decode_tok_s.median for e, r in rows.items()} if base else {}

    def summary(self, preset: str) -> str:
        """The issue's target ratios for one preset, measured in this run."""
        rows = {r.engine: r for r in self.rows if r.preset in (preset, "fp32 (torch)")}
        ours, checks = rows.get("ov_causal-genai"), []
        pairs = (("llm-pipeline", "decode", "decode_tok_s"), ("optimum-intel", "decode", "decode_tok_s"),
                 ("transformers", "decode", "decode_tok_s"), ("llm-pipeline", "TTFT", "ttft_s"))
        for other, label, key in pairs:
            if ours is not None and other in rows:
                ratio = getattr(ours, key).median / getattr(rows[other], key).median
                checks.append(f"{label} vs {other}: {ratio:.2f}x")
        if ours is not None and "llm-pipeline" in rows:
            ratio = ours.throughput_tok_s / rows["llm-pipeline"].throughput_tok_s
            checks.append(f"batch throughput vs llm-pipeline: {ratio:.2f}x")
        if "ov_causal-optimum" in rows and "optimum-intel" in rows:
            overhead = rows["optimum-intel"].decode_tok_s.median / rows["ov_causal-optimum"].decode_tok_s.median - 1
            checks.append(f"wrapper overhead on the transformers loop: {overhead:+.1%}")
        return "; ".join(checks)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        from ..ui.display import to_json

        return to_json(asdict(self), path)

    def to_pandas(self) -> Any:
        """One row per engine and preset, with the medians (``pandas.DataFrame``; needs pandas)."""
        from ..ui.display import to_pandas

        return to_pandas([self._flat(r) for r in self.rows])

    @staticmethod
    def _flat(r: BenchRow) -> dict[str, Any]:
        return {"engine": r.engine, "preset": r.preset, "ttft_ms": 1000 * r.ttft_s.median,
                "ttft_prefix_ms": 1000 * r.ttft_prefix_s.median if r.ttft_prefix_s else None,
                "tpot_ms": 1000 * r.tpot_s.median, "decode_tok_s": r.decode_tok_s.median,
                "decode_tok_s_low": r.decode_tok_s.low, "decode_tok_s_high": r.decode_tok_s.high,
                "e2e_s": r.e2e_s.median, "batch_tok_s": r.throughput_tok_s, "load_s": r.load_s, "ir_mib": r.ir_mib,
                "peak_rss_mib": r.peak_rss_mib}

    def _repr_html_(self) -> str:
        from ..ui.display import html_table

        flat = [self._flat(r) for r in self.rows]
        columns = ("engine", "preset", "ttft_ms", "ttft_prefix_ms", "tpot_ms", "decode_tok_s", "batch_tok_s",
                   "load_s", "ir_mib") + (("peak_rss_mib",) if any(r.peak_rss_mib for r in self.rows) else ())
        caption = (f"{Path(self.model).name}: {self.prompt_tokens}-token fresh prompts, {self.new_tokens} new tokens, "
                   f"median of {self.runs}")
        failures = "".join(f"<br>FAILED {html.escape(k)}: {html.escape(v)}" for k, v in self.failures.items())
        return html_table(columns, [[f[c] for c in columns] for f in flat], caption) + failures

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Decode tok/s and time to first token per engine and preset (a matplotlib Figure, shown inline in Jupyter)."""
        from ..ui.display import new_figure

        labels = [f"{r.engine}\n{r.preset}" for r in self.rows]
        fig, axes = new_figure(2, (12, 4))
        axes[0].bar(labels, [r.decode_tok_s.median for r in self.rows])
        axes[0].set_ylabel("decode tokens/s")
        axes[1].bar(labels, [1000 * r.ttft_s.median for r in self.rows])
        axes[1].set_ylabel("time to first token (ms)")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7, rotation=45)
        fig.suptitle(f"Speed per engine: {Path(self.model).name}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def memory_bandwidth_gb_s(size_mib: int = 512, repeats: int = 5) -> float:
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

    one = dict(max_new_tokens=1, min_new_tokens=1, do_sample=False)
    full = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
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
    runs: int = 5,
    num_prompts: int = 8,
    engines: Sequence[str] = ENGINES,
    device: str = "CPU",
    ov_cache_dir: str | os.PathLike[str] | None = None,
    peak_rss: bool = False,
) -> BenchReport:
    """Measure each engine on each preset, side by side in this process.

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
        runners = {e: r for e in engines if (r := _engine_model(e, ours, device)) is not None}
        sizes = {e: (preset, load_s, size_mib) for e in runners}
        if "transformers" in engines and not torch_measured:
            from transformers import AutoModelForCausalLM as TorchModel

            start = time.perf_counter()
            runners["transformers"] = TorchModel.from_pretrained(model, dtype="float32").eval()
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
                    rss = engine_peak_rss_mib(engine, ours.model_save_dir, model, device=device,
                                              ov_config=dict(ours.ov_config), prompt_tokens=prompt_tokens,
                                              new_tokens=new_tokens, num_prompts=num_prompts)
                except (OVCausalError, OSError) as exc:
                    failures[f"{engine} {label} memory"] = str(exc)
            rows.append(BenchRow(engine, label, load_s=load, ir_mib=size, peak_rss_mib=rss, **measured))
        del ours, runners
    return BenchReport(str(model), prompt_tokens, new_tokens, runs, num_prompts, memory_bandwidth_gb_s(),
                       peak_rss_mib(), rows, failures)


def _engine_model(engine: str, ours: Any, device: str) -> Any:
    if engine == "ov_causal-genai":
        ours.backend = "genai"
        return ours
    if engine == "ov_causal-optimum":
        clone = _OptimumView(ours)
        return clone
    if engine == "llm-pipeline":
        return _RawLLMPipeline(ours.model_save_dir, device, dict(ours.ov_config))
    if engine == "optimum-intel":
        from optimum.intel import OVModelForCausalLM

        return OVModelForCausalLM.from_pretrained(str(ours.model_save_dir), export=False, device=device,
                                                  ov_config=dict(ours.ov_config))
    return None


class _RawLLMPipeline:
    """``openvino_genai.LLMPipeline`` called directly with token ids: the engine without our wrapper."""

    def __init__(self, folder: Any, device: str, properties: dict[str, str]) -> None:
        import openvino_genai

        self.pipe = openvino_genai.LLMPipeline(str(folder), device, **properties)

    def generate(self, input_ids: Any, attention_mask: Any, max_new_tokens: int, min_new_tokens: int,
                 do_sample: bool) -> Any:
        import openvino
        import openvino_genai

        config = openvino_genai.GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
        inputs = openvino_genai.TokenizedInputs(
            openvino.Tensor(input_ids.numpy()), openvino.Tensor(attention_mask.numpy())
        )
        return self.pipe.generate(inputs, config)


class _OptimumView:
    """ov_causal's model forced onto the transformers loop, for one engine's measurements."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def generate(self, **kwargs: Any) -> Any:
        self.model.backend = "optimum"
        try:
            return self.model.generate(**kwargs)
        finally:
            self.model.backend = "auto"
