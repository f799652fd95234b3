"""What ``bench`` and ``evaluate`` return: their tables as text, HTML (Jupyter), JSON, pandas and plots."""

from __future__ import annotations

import html
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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
    thorough: tuple[str, ...] = ()  # flags for the thorough run, when this was a quick one

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
            f"bandwidth-bound decode limit bandwidth / IR size" + ("; RSS MiB = peak of a process running that engine "
                                                                 "alone)" if with_rss else ")")
        )
        lines.append(f"peak memory (RSS) of this process, every engine loaded: {self.peak_rss_mib:.0f} MiB")
        for name, error in self.failures.items():
            lines.append(f"FAILED {name}: {error}")
        if self.thorough:
            lines.append(f"quick run: {self.runs} runs, {self.num_prompts} prompts per batch; for the thorough run: "
                         f"{' '.join(self.thorough)}")
        return "\n".join(lines)

    def ratios(self, preset: str) -> dict[str, float]:
        """Decode speed of each engine relative to raw optimum-intel for one preset."""
        rows = {r.engine: r for r in self.rows if r.preset in (preset, "fp32 (torch)")}
        base = rows.get("optimum-intel")
        return {e: r.decode_tok_s.median / base.decode_tok_s.median for e, r in rows.items()} if base else {}

    def summary(self, preset: str) -> str:
        """Ratios of ov_causal on GenAI to the other engines for one preset, measured in this run."""
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
        from ..ui.display import finished_figure, new_figure

        labels = [f"{r.engine}\n{r.preset}" for r in self.rows]
        fig, axes = new_figure(2, (12, 4))
        axes[0].bar(labels, [r.decode_tok_s.median for r in self.rows])
        axes[0].set_ylabel("decode tokens/s")
        axes[1].bar(labels, [1000 * r.ttft_s.median for r in self.rows])
        axes[1].set_ylabel("time to first token (ms)")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7, rotation=45)
        return finished_figure(fig, f"Speed per engine: {Path(self.model).name}", path)


@dataclass(frozen=True)
class EvalRow:
    """One preset against the reference. Changes are relative (0.05 = +5%)."""

    preset: str
    weights: str
    perplexity: float
    ppl_change: float
    top1_agreement: float
    mean_kl: float
    first_divergence: float
    divergent_fraction: float
    ir_mib: float
    tokens_per_second: float
    prefill_tokens_per_second: float = float("nan")  # measured when ``tune`` ranks by a workload's time to answer


@dataclass(frozen=True)
class EvalReport:
    """The result of ``evaluate``: one row per preset, the reference first."""

    model: str
    text_tokens: int
    windows: int
    new_tokens: int
    rows: list[EvalRow] = field(default_factory=list)
    num_prompts: int = 0
    speed_runs: int = 0
    peak_rss_mib: float | None = None  # this process, after the run
    thorough: tuple[str, ...] = ()  # flags for the thorough run, when this was a quick one

    def row(self, preset: str) -> EvalRow:
        return next(r for r in self.rows if r.preset == preset)

    def table(self, marked: str | None = None) -> str:
        header = (f"{'preset':24s} {'weights':36s} {'ppl':>8s} {'Δppl':>8s} {'top1':>7s} {'KL':>8s} "
                  f"{'1st div':>7s} {'div%':>6s} {'MiB':>7s} {'tok/s':>7s}")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            mark = " <- chosen" if r.preset == marked else ""
            lines.append(
                f"{r.preset:24s} {r.weights:36s} {r.perplexity:8.3f} {r.ppl_change:+8.2%} {r.top1_agreement:7.1%} "
                f"{r.mean_kl:8.4f} {r.first_divergence:7.1f} {r.divergent_fraction:6.1%} {r.ir_mib:7.1f} "
                f"{r.tokens_per_second:7.1f}{mark}"
            )
        prompts = f" from {self.num_prompts} prompts" if self.num_prompts else ""
        runs = f", median of {self.speed_runs}" if self.speed_runs else ""
        lines.append(f"({self.text_tokens} tokens in {self.windows} windows; divergence over {self.new_tokens} "
                     f"greedy tokens per prompt{prompts}; tok/s with the latency runtime{runs})")
        if self.peak_rss_mib is not None:
            lines.append(f"peak memory (RSS) of this process: {self.peak_rss_mib:.0f} MiB")
        if self.thorough:
            lines.append(f"quick run: {self.text_tokens} tokens, {self.num_prompts} prompts, {self.speed_runs} speed "
                         f"run(s); for the thorough run: {' '.join(self.thorough)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        from ..ui.display import to_json

        return to_json(self.to_dict(), path)

    def to_pandas(self) -> Any:
        """One row per preset (``pandas.DataFrame``; needs pandas)."""
        from ..ui.display import to_pandas

        return to_pandas([asdict(r) for r in self.rows], list(EvalRow.__dataclass_fields__))

    def html(self, marked: str | None = None) -> str:
        from ..ui.display import html_table

        rows = [(r.preset, r.weights, r.perplexity, f"{r.ppl_change:+.2%}", f"{r.top1_agreement:.1%}", r.mean_kl,
                 r.first_divergence, f"{r.divergent_fraction:.1%}", r.ir_mib, r.tokens_per_second) for r in self.rows]
        marked_index = next((i for i, r in enumerate(self.rows) if r.preset == marked), None)
        caption = (f"{Path(self.model).name}: {self.text_tokens} tokens in {self.windows} windows; divergence over "
                   f"{self.new_tokens} greedy tokens")
        return html_table(("preset", "weights", "ppl", "Δppl", "top1", "KL", "1st div", "div%", "MiB", "tok/s"),
                          rows, caption, marked_index)

    def _repr_html_(self) -> str:
        return self.html()

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Perplexity change against IR size and against speed, one point per preset (a matplotlib Figure).

        In Jupyter the returned figure shows inline; ``path`` also saves it (PNG, SVG, ... by suffix).
        """
        from ..ui.display import finished_figure, new_figure

        fig, axes = new_figure(2, (10, 4))
        for ax, key, label in ((axes[0], "ir_mib", "IR size (MiB)"), (axes[1], "tokens_per_second", "decode tok/s")):
            for r in self.rows:
                ax.scatter(getattr(r, key), 100 * r.ppl_change)
                ax.annotate(r.preset, (getattr(r, key), 100 * r.ppl_change), fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel("perplexity change vs fp32 (%)")
            ax.grid(alpha=0.3)
        return finished_figure(fig, f"Accuracy cost of each preset: {Path(self.model).name}", path)
