"""What ``bench_against`` returns: time to answer per workload class on each engine, with the ratios to
llama.cpp side by side; as text, HTML (Jupyter), JSON, pandas and a chart, like the other reports."""

from __future__ import annotations

import html
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .reports import Measure
from .versus_workloads import achieved_gb_s, speedup

REFERENCE = "llama.cpp"


@dataclass(frozen=True)
class EngineInfo:
    """One column of the report: an engine on some weights."""

    name: str  # llama.cpp, openvino-gguf, ov_causal int8, ...
    weights: str  # Q4_1 (GGUF), int8 (OpenVINO IR), ...
    weight_mib: float
    threads: int


@dataclass(frozen=True)
class WorkloadRow:
    """One workload class: each engine's time to answer (seconds; None where it was not measured)."""

    workload: str
    title: str
    description: str
    seconds: dict[str, Measure | None]
    tokens: int  # new tokens in one answer (every prompt of a list or of the users together)
    skipped: dict[str, str] = field(default_factory=dict)  # engine -> why it has no time here

    def ratio(self, engine: str) -> float | None:
        """llama.cpp's time over ``engine``'s (> 1: ``engine`` answers sooner)."""
        ours, reference = self.seconds.get(engine), self.seconds.get(REFERENCE)
        return speedup(reference.median if reference else None, ours.median if ours else None)


@dataclass(frozen=True)
class VersusReport:
    model: str
    gguf: str
    threads: int
    runs: int
    engines: list[EngineInfo]
    rows: list[WorkloadRow] = field(default_factory=list)
    bandwidth_gb_s: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after the run (a shared machine)
    pairing: str = ""  # how the weights of the engines correspond
    failures: dict[str, str] = field(default_factory=dict)  # an engine that could not be loaded -> why

    def row(self, workload: str) -> WorkloadRow:
        return next(r for r in self.rows if r.workload == workload)

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """``{workload: {engine: llama.cpp time / engine time}}`` for every engine but llama.cpp."""
        return {r.workload: {e.name: r.ratio(e.name) for e in self.engines if e.name != REFERENCE} for r in self.rows}

    def decode_gb_s(self, engine: EngineInfo) -> float | None:
        """Weight bytes read per second in the long generation (every token reads every weight once)."""
        row = next((r for r in self.rows if r.workload == "long-generation"), None)
        measure = row.seconds.get(engine.name) if row else None
        if measure is None:
            return None
        return achieved_gb_s(int(engine.weight_mib * 2**20), row.tokens / measure.median)

    def _cell(self, row: WorkloadRow, engine: str) -> str:
        measure = row.seconds.get(engine)
        if measure is None:
            return "skipped" if engine in row.skipped else "-"
        ratio = row.ratio(engine)
        return f"{measure.median:.3f}" + (f" ({ratio:.2f}x)" if ratio is not None and engine != REFERENCE else "")

    def table(self) -> str:
        from ..ui.display import text_table

        names = [e.name for e in self.engines]
        rows = [[r.title, r.description] + [self._cell(r, n) for n in names] for r in self.rows]
        decode = [self.decode_gb_s(e) for e in self.engines]
        rows.append(["decode GB/s (weights x tok/s)", f"machine: {self.bandwidth_gb_s:.1f} GB/s copy"]
                    + [f"{g:.1f}" if g is not None else "-" for g in decode])
        lines = [text_table(["workload", "one answer"] + names, rows), "",
                 "engines: " + "; ".join(f"{e.name} = {e.weights}, {e.weight_mib:.0f} MiB" for e in self.engines),
                 f"seconds to answer, median of {self.runs} runs in rotating order, {self.threads} threads each; "
                 f"(Nx) = llama.cpp's time / this engine's (> 1: faster than llama.cpp). Greedy, EOS ignored.",
                 f"load average {self.load_average[0]:.1f} before, {self.load_average[1]:.1f} after"]
        if self.pairing:
            lines.append(f"weights: {self.pairing}")
        for row in self.rows:
            for engine, why in row.skipped.items():
                lines.append(f"skipped {row.workload} on {engine}: {why}")
        lines += [f"FAILED {name}: {why}" for name, why in self.failures.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = self.ratios()
        data["decode_gb_s"] = {e.name: self.decode_gb_s(e) for e in self.engines}
        return data

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        from ..ui.display import to_json

        return to_json(self.to_dict(), path)

    def _records(self) -> list[dict[str, Any]]:
        return [{"workload": r.workload, "engine": e.name, "weights": e.weights,
                 "seconds": r.seconds[e.name].median if r.seconds.get(e.name) else None,
                 "ratio_vs_llama_cpp": r.ratio(e.name) if e.name != REFERENCE else None,
                 "skipped": r.skipped.get(e.name)} for r in self.rows for e in self.engines]

    def to_pandas(self) -> Any:
        """One row per workload and engine (``pandas.DataFrame``; needs pandas)."""
        from ..ui.display import to_pandas

        return to_pandas(self._records())

    def _repr_html_(self) -> str:
        from ..ui.display import html_table

        names = [e.name for e in self.engines]
        rows = [[r.title, r.description] + [self._cell(r, n) for n in names] for r in self.rows]
        caption = (f"{Path(self.model).name} against llama.cpp: seconds to answer, median of {self.runs}, "
                   f"{self.threads} threads")
        failures = "".join(f"<br>FAILED {html.escape(k)}: {html.escape(v)}" for k, v in self.failures.items())
        return html_table(["workload", "one answer"] + names, rows, caption) + failures

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Each engine's speed relative to llama.cpp per workload class (a matplotlib Figure; 1 = as fast)."""
        from ..ui.display import finished_figure, new_figure

        fig, axes = new_figure(1, (10, 4))
        ours = [e.name for e in self.engines if e.name != REFERENCE]
        width = 0.8 / max(1, len(ours))
        for i, engine in enumerate(ours):
            xs = [j + i * width for j in range(len(self.rows))]
            axes.bar(xs, [r.ratio(engine) or 0.0 for r in self.rows], width, label=engine)
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_xticks([j + width * (len(ours) - 1) / 2 for j in range(len(self.rows))],
                        [r.title for r in self.rows], fontsize=7, rotation=20)
        axes.set_ylabel("llama.cpp time / engine time")
        axes.legend(fontsize=7)
        return finished_figure(fig, f"Time to answer against llama.cpp: {Path(self.model).name}", path)
