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
from ..convert.cache import cache_root, folder_fingerprint
from ..convert.calibration import TextSource
from ..convert.files import write_json
from ..errors import OptionError
from .evaluate import DEFAULT_PRESETS, REFERENCE, evaluate
from .reports import EvalReport

CANDIDATES = DEFAULT_PRESETS  # the quick run: the presets ``evaluate`` compares, so their exports are shared
ALL_CANDIDATES = ("int8", "int4_asym_g128", "int4_asym_g64", "int4_sym_g128", "int4_sym_g64")  # the thorough run
DATA_AWARE_CANDIDATES = ("int4_asym_g128_gptq", "int4_asym_g64_gptq")


@dataclass(frozen=True)
class TuneResult:
    """The evaluated candidates and the choice (None when no candidate meets the budget)."""

    report: EvalReport
    max_ppl_increase: float
    objective: str
    choice: str | None
    best_available: str

    def table(self) -> str:
        verdict = (
            f"chosen: {self.choice} ({self.objective} objective, perplexity budget +{self.max_ppl_increase:.1%})"
            if self.choice
            else f"no candidate keeps perplexity within +{self.max_ppl_increase:.1%}; the most accurate is "
            f"{self.best_available} ({self.report.row(self.best_available).ppl_change:+.2%}). Nothing was chosen: "
            "raise --max-ppl-increase or try data-aware presets (--calibration)."
        )
        return self.report.table(marked=self.choice) + "\n" + verdict

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "best_available": self.best_available, "objective": self.objective,
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


def choose(report: EvalReport, max_ppl_increase: float, objective: str) -> tuple[str | None, str]:
    """(choice within budget or None, most accurate candidate); the reference is never a candidate."""
    candidates = [r for r in report.rows if r.preset != REFERENCE]
    if not candidates:
        raise OptionError("tune needs at least one candidate preset besides the fp32 reference.")
    best = min(candidates, key=lambda r: r.ppl_change).preset
    within = [r for r in candidates if r.ppl_change <= max_ppl_increase]
    if not within:
        return None, best
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
    save: str | os.PathLike[str] | None = None,
    ov_cache_dir: str | os.PathLike[str] | None = None,
    **evaluate_options: Any,
) -> TuneResult:
    """Evaluate candidate presets and pick the fastest (or smallest) within the perplexity budget.

    Args:
        model: Hub id or checkpoint folder.
        max_ppl_increase: allowed relative perplexity increase over fp32 (0.02 = +2%).
        objective: ``speed`` (highest decode tok/s on this machine) or ``size`` (smallest IR).
        candidates: presets to try (default: ``CANDIDATES``, int8 and two int4 presets, plus the GPTQ ones with
            calibration; ``ALL_CANDIDATES`` are the thorough run's).
        text: held-out text to measure on; calibration: text for data-aware candidates (keep them apart).
        save: write the chosen model here, with the choice recorded in its manifest.

    Example:
        >>> result = tune("my-model", max_ppl_increase=0.02, text="heldout.txt")
        >>> print(result.table())
    """
    if objective not in ("speed", "size"):
        raise OptionError(f"objective={objective!r} is not valid: use 'speed' or 'size'.")
    if not isinstance(max_ppl_increase, (int, float)) or max_ppl_increase < 0:
        raise OptionError(f"max_ppl_increase={max_ppl_increase!r} is not valid: use e.g. 0.02 for +2%.")
    data_aware = DATA_AWARE_CANDIDATES if calibration is not None else ()
    quick = candidates is None
    if candidates is None:
        candidates = CANDIDATES + data_aware
    report = evaluate(model, candidates, text, calibration=calibration, ov_cache_dir=ov_cache_dir, **evaluate_options)
    if quick:
        report = replace(report, thorough=(*report.thorough, f"--presets {','.join(ALL_CANDIDATES + data_aware)}"))
    choice, best = choose(report, max_ppl_increase, objective)
    result = TuneResult(report, float(max_ppl_increase), objective, choice, best)
    if choice is not None:
        row = report.row(choice)
        record = tuned_record(choice, objective, max_ppl_increase, row.ppl_change, row.tokens_per_second,
                              report.text_tokens)
        remember(model, record, ov_cache_dir)
        if save is not None:
            _save_choice(model, choice, record, calibration, save, ov_cache_dir)
    return result


def _save_choice(model: Any, choice: str, record: dict, calibration: Any, save: Any, ov_cache_dir: Any) -> None:
    from ..model.modeling import AutoModelForCausalLM

    chosen = AutoModelForCausalLM.from_pretrained(
        model, preset=choice, calibration=calibration if choice in DATA_AWARE_CANDIDATES else None,
        ov_cache_dir=ov_cache_dir, compile=False,
    )
    chosen.ov_manifest = replace(chosen.ov_manifest, tuned=record)
    chosen.save_pretrained(save)


def remember(model: str | os.PathLike[str], record: dict, ov_cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Store a tuned choice for ``preset="auto"`` (``tuned.json`` in the cache root, replaced atomically)."""
    root = cache_root(ov_cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    write_json(tuned_file(root), with_record(root, tuned_key(model, folder_fingerprint), record))
