"""``tune``: the fastest (or smallest) preset within an accuracy budget, measured on this machine.

A tuned choice is remembered per checkpoint (``tuned.json`` in the export cache) and used by
``from_pretrained(..., preset="auto")``; without one, ``auto`` follows the rule in
``ov_causal.config.auto.auto_preset``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..config.auto import tuned_file, tuned_key, tuned_record, with_record
from ..config.presets import PRESETS
from ..convert.cache import cache_root, folder_fingerprint
from ..convert.calibration import TextSource
from ..convert.files import write_json
from ..errors import OptionError
from .evaluate import DEFAULT_PRESETS, REFERENCE, evaluate
from .reports import EvalReport, EvalRow
from .workloads import Workload, get_workload

# The quick run: the presets ``evaluate`` compares (their exports are shared) and the fastest-decoding int4.
CANDIDATES = (*DEFAULT_PRESETS, "int4_sym_channel")
ALL_CANDIDATES = ("int8", "int4_asym_g128", "int4_asym_g64", "int4_sym_g128", "int4_sym_g64",  # the thorough run
                  "int4_sym_channel", "int4_asym_channel", "int4_sym_channel_r80", "int4_sym_channel_all")
DATA_AWARE_CANDIDATES = ("int4_asym_g128_gptq", "int4_asym_g64_gptq", "int4_sym_channel_awq")  # with calibration
ALL_DATA_AWARE_CANDIDATES = (*DATA_AWARE_CANDIDATES, "int4_sym_channel_gptq")


@dataclass(frozen=True)
class TuneResult:
    """The evaluated candidates and the choice (None when no candidate meets the budget)."""

    report: EvalReport
    max_ppl_increase: float
    objective: str
    choice: str | None
    best_available: str
    workload: str | None = None  # the speed objective ranked by this workload's time to answer, not decode tok/s

    def table(self) -> str:
        goal = f"{self.objective} objective" + (f" for the {self.workload} workload" if self.workload else "")
        verdict = (
            f"chosen: {self.choice} ({goal}, perplexity budget +{self.max_ppl_increase:.1%})"
            if self.choice
            else f"no candidate keeps perplexity within +{self.max_ppl_increase:.1%}; the most accurate is "
            f"{self.best_available} ({self.report.row(self.best_available).ppl_change:+.2%}). Nothing was chosen: "
            "raise --max-ppl-increase or try data-aware presets (--calibration)."
        )
        return "\n".join([self.report.table(marked=self.choice), *self._answer_lines(), verdict])

    def _answer_lines(self) -> list[str]:
        if self.workload is None:
            return []
        w = get_workload(self.workload)
        times = ", ".join(f"{name} {1000 * t:.0f} ms" for name, t in self.times_to_answer().items())
        return [f"time to answer, {w.name} ({w.prompt_tokens}-token prompt, {w.new_tokens} new tokens; prompt / "
                f"prefill tok/s + new tokens / decode tok/s): {times}"]

    def times_to_answer(self) -> dict[str, float]:
        """Estimated seconds to answer one request of the workload, per candidate (empty without a workload)."""
        if self.workload is None:
            return {}
        w = get_workload(self.workload)
        return {r.preset: time_to_answer(r, w) for r in self.report.rows}

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "best_available": self.best_available, "objective": self.objective,
                "workload": self.workload, "times_to_answer_s": self.times_to_answer(),
                "max_ppl_increase": self.max_ppl_increase, "report": self.report.to_dict()}

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        from ..ui.display import to_json

        return to_json(self.to_dict(), path)

    def to_pandas(self) -> Any:
        """The evaluated candidates, with a ``chosen`` column (``pandas.DataFrame``; needs pandas)."""
        frame = self.report.to_pandas()
        frame["chosen"] = frame["preset"] == self.choice
        return frame

    def _repr_html_(self) -> str:
        import html

        return self.report.html(marked=self.choice) + f"<p>{html.escape(self.table().splitlines()[-1])}</p>"

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The report's plot (perplexity change vs size and speed), the choice in the title."""
        fig = self.report.plot()
        fig.suptitle(f"{fig.get_suptitle()} (chosen: {self.choice or 'none'})")
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def time_to_answer(row: EvalRow, workload: Workload) -> float:
    """Estimated seconds to answer one request of ``workload`` with the row's measured speeds."""
    return workload.time_to_answer(row.prefill_tokens_per_second, row.tokens_per_second)


def choose(report: EvalReport, max_ppl_increase: float, objective: str,
           workload: str | None = None) -> tuple[str | None, str]:
    """(choice within budget or None, most accurate candidate); the reference is never a candidate.

    ``speed`` picks the highest decode tok/s, or with a ``workload`` the shortest estimated time to answer."""
    candidates = [r for r in report.rows if r.preset != REFERENCE]
    if not candidates:
        raise OptionError("tune needs at least one candidate preset besides the fp32 reference.")
    best = min(candidates, key=lambda r: r.ppl_change).preset
    within = [r for r in candidates if r.ppl_change <= max_ppl_increase]
    if not within:
        return None, best
    if objective == "speed" and workload is not None:
        w = get_workload(workload)
        return min(within, key=lambda r: time_to_answer(r, w)).preset, best
    if objective == "speed":
        return max(within, key=lambda r: r.tokens_per_second).preset, best
    return min(within, key=lambda r: (r.ir_mib, r.ppl_change)).preset, best


def tune(
    model: str | os.PathLike[str],
    max_ppl_increase: float = 0.02,
    objective: Literal["speed", "size"] = "speed",
    candidates: tuple[str, ...] | None = None,
    text: TextSource | None = None,
    *,
    calibration: TextSource | None = None,
    workload: str | None = None,
    save: str | os.PathLike[str] | None = None,
    ov_cache_dir: str | os.PathLike[str] | None = None,
    **evaluate_options: Any,
) -> TuneResult:
    """Evaluate candidate presets and pick the fastest (or smallest) within the perplexity budget.

    Args:
        model: Hub id or checkpoint folder.
        max_ppl_increase: allowed relative perplexity increase over fp32 (0.02 = +2%).
        objective: ``speed`` (highest decode tok/s on this machine) or ``size`` (smallest IR).
        candidates: presets to try (default: ``CANDIDATES``, int8 and three int4 presets, plus
            ``DATA_AWARE_CANDIDATES`` with calibration; ``ALL_CANDIDATES`` are the thorough run's).
        text: held-out text to measure on; calibration: text for data-aware candidates (keep them apart).
        workload: with the ``speed`` objective, rank by the estimated time to answer one request of this
            workload (``WORKLOADS``: long-prompt, chat, long-generation) instead of decode tok/s; prefill
            speed is then measured too.
        save: write the chosen model here, with the choice recorded in its manifest.

    Example:
        >>> result = tune("my-model", max_ppl_increase=0.02, text="heldout.txt")
        >>> print(result.table())
    """
    if objective not in ("speed", "size"):
        raise OptionError(f"objective={objective!r} is not valid: use 'speed' or 'size'.")
    if not isinstance(max_ppl_increase, (int, float)) or max_ppl_increase < 0:
        raise OptionError(f"max_ppl_increase={max_ppl_increase!r} is not valid: use e.g. 0.02 for +2%.")
    _check_workload(workload, objective)
    quick = candidates is None
    if candidates is None:
        candidates = CANDIDATES + (DATA_AWARE_CANDIDATES if calibration is not None else ())
    report = evaluate(model, candidates, text, calibration=calibration, ov_cache_dir=ov_cache_dir,
                      prefill_speed=workload is not None, **evaluate_options)
    if quick:
        thorough = ALL_CANDIDATES + (ALL_DATA_AWARE_CANDIDATES if calibration is not None else ())
        report = replace(report, thorough=(*report.thorough, f"--presets {','.join(thorough)}"))
    choice, best = choose(report, max_ppl_increase, objective, workload)
    result = TuneResult(report, float(max_ppl_increase), objective, choice, best, workload)
    if choice is not None:
        row = report.row(choice)
        goal = objective if workload is None else f"{objective} ({workload})"
        record = tuned_record(choice, goal, max_ppl_increase, row.ppl_change, row.tokens_per_second,
                              report.text_tokens)
        remember(model, record, ov_cache_dir)
        if save is not None:
            _save_choice(model, choice, record, calibration, save, ov_cache_dir)
    return result


def _check_workload(workload: str | None, objective: str) -> None:
    if workload is None:
        return
    get_workload(workload)
    if objective != "speed":
        raise OptionError(f"workload={workload!r} ranks presets by time to answer, which only the 'speed' objective "
                          f"uses (objective={objective!r}): drop the workload or use objective='speed'.")


def _save_choice(model: Any, choice: str, record: dict, calibration: Any, save: Any, ov_cache_dir: Any) -> None:
    from ..model.modeling import AutoModelForCausalLM

    data_aware = choice in PRESETS and PRESETS[choice].compression.data_aware
    chosen = AutoModelForCausalLM.from_pretrained(
        model, preset=choice, calibration=calibration if data_aware else None,
        ov_cache_dir=ov_cache_dir, compile=False,
    )
    chosen.ov_manifest = replace(chosen.ov_manifest, tuned=record)
    chosen.save_pretrained(save)


def remember(model: str | os.PathLike[str], record: dict, ov_cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Store a tuned choice for ``preset="auto"`` (``tuned.json`` in the cache root, replaced atomically)."""
    root = cache_root(ov_cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    write_json(tuned_file(root), with_record(root, tuned_key(model, folder_fingerprint), record))
