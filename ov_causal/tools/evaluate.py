"""What a preset costs: perplexity, agreement and divergence against the uncompressed model, size and speed.

All models run on OpenVINO; the reference is the same checkpoint exported without compression
(``fp32``), run with the ``accuracy`` runtime so that only the weights differ.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..convert.calibration import TextSource, load_texts, token_stream
from ..convert.ir import ir_mib
from ..convert.sources import DEMO_MODEL
from ..errors import OptionError
from ..ui.progress import stage
from .memory import peak_rss_mib
from .reports import EvalReport, EvalRow
from .runners import greedy

logger = logging.getLogger(__name__)

DEFAULT_PRESETS = ("int8", "int4_sym_g128", "int4_asym_g64")
REFERENCE = "fp32"
THOROUGH = {"max_tokens": 4096, "num_prompts": 4, "speed_runs": 3}  # the defaults are the quick run


def default_text_path() -> Path:
    """The built-in text for quick checks: held-out Python standard library source (never trained on)."""
    return DEMO_MODEL / "heldout.txt"


def _windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of sliding windows; each token is scored once."""
    spans, prev_end = [], 0
    for begin in range(0, n_tokens - 1, stride):
        end = min(begin + window, n_tokens)
        spans.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return spans


def _log_probs(model: Any, ids: Any) -> Any:
    import torch

    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


@dataclass
class _Scores:
    nll: float = 0.0
    agree: int = 0
    kl: float = 0.0
    count: int = 0

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.count)


@dataclass
class _Reference:
    """What every candidate is compared with, computed once per ``evaluate`` call by the fp32 model.

    ``log_probs`` holds the scored rows of each window ([positions, vocabulary], float32: 4 bytes x vocabulary
    per scored token, ~200 MB for 1024 tokens of a 49k vocabulary), so that candidates are loaded one at a time.
    """

    log_probs: list[Any]
    scores: _Scores
    continuations: list[Any]


@dataclass(frozen=True)
class _Text:
    """The scored token ids, their windows and the divergence prompts."""

    ids: list[int]
    spans: list[tuple[int, int, int]]
    prompts: list[Any]
    new_tokens: int
    prefill_prompts: Any = None  # inputs of the prefill-speed probe, when measured


def _targets(text: _Text, span: tuple[int, int, int]) -> tuple[Any, Any, slice]:
    import torch

    begin, end, first = span
    rows = slice(first - begin - 1, end - begin - 1)  # logits at position t predict token t + 1
    return torch.tensor([text.ids[begin:end]]), torch.tensor(text.ids[first:end]), rows


def _add(scores: _Scores, logp: Any, ref: Any, targets: Any) -> None:
    scores.nll -= logp.gather(1, targets[:, None]).sum().item()
    scores.agree += (logp.argmax(-1) == ref.argmax(-1)).sum().item()
    scores.kl += (ref.exp() * (ref - logp)).sum().item()
    scores.count += len(targets)


def _reference(model: Any, text: _Text) -> _Reference:
    """The fp32 model's log-probabilities on every window and greedy continuations of every prompt."""
    scores, log_probs = _Scores(), []
    for span in text.spans:
        chunk, targets, rows = _targets(text, span)
        logp = _log_probs(model, chunk)[rows]
        _add(scores, logp, logp, targets)
        log_probs.append(logp)
    return _Reference(log_probs, scores, _continuations(model, text))


def _score(model: Any, ref: _Reference, text: _Text) -> _Scores:
    scores = _Scores()
    for span, ref_logp in zip(text.spans, ref.log_probs):
        chunk, targets, rows = _targets(text, span)
        _add(scores, _log_probs(model, chunk)[rows], ref_logp, targets)
    return scores


def _continuations(model: Any, text: _Text) -> list[Any]:
    """Greedy continuation (new token ids) of each prompt."""
    return [model.generate(**p, **greedy(text.new_tokens))[0, p["input_ids"].shape[1]:] for p in text.prompts]


def _divergence(reference: list[Any], outputs: list[Any], new_tokens: int) -> tuple[float, float]:
    """Mean position of the first differing greedy token, and mean fraction of differing tokens."""
    firsts, fractions = [], []
    for ref, out in zip(reference, outputs):
        differ = (ref != out).tolist()
        firsts.append(differ.index(True) if True in differ else new_tokens)
        fractions.append(sum(differ) / new_tokens)
    return statistics.mean(firsts), statistics.mean(fractions)


def decode_speed(model: Any, prompt: dict[str, Any], new_tokens: int, runs: int) -> float:
    """Median greedy decode tokens/s (after a warm-up run)."""
    model.generate(**prompt, **greedy(new_tokens))
    speeds = []
    for _ in range(runs):
        start = time.perf_counter()
        model.generate(**prompt, **greedy(new_tokens))
        speeds.append(new_tokens / (time.perf_counter() - start))
    return statistics.median(speeds)


def _prompts(tokenizer: Any, ids: list[int], prompts: Sequence[str] | None, count: int, length: int) -> list[Any]:
    import torch

    if prompts:
        return [tokenizer([p], return_tensors="pt") for p in prompts]
    step = max(1, (len(ids) - length) // max(1, count))
    starts = [i * step for i in range(count) if i * step + length <= len(ids)]
    ones = torch.ones(1, length, dtype=torch.long)
    return [{"input_ids": torch.tensor([ids[s : s + length]]), "attention_mask": ones} for s in starts]


def thorough_flags(max_tokens: int, num_prompts: int, speed_runs: int) -> tuple[str, ...]:
    """The CLI flags that raise a run's settings to the thorough run's (``THOROUGH``); empty when none is lower."""
    given = {"max_tokens": max_tokens, "num_prompts": num_prompts, "speed_runs": speed_runs}
    return tuple(f"--{key.replace('_', '-')} {value}" for key, value in THOROUGH.items() if given[key] < value)


def evaluate(
    model: str | os.PathLike[str],
    presets: Sequence[str | Any] = DEFAULT_PRESETS,
    text: TextSource | None = None,
    *,
    prompts: Sequence[str] | None = None,
    calibration: TextSource | None = None,
    window: int = 256,
    stride: int | None = None,
    max_tokens: int = 1024,
    new_tokens: int = 32,
    num_prompts: int = 2,
    speed_runs: int = 1,
    prefill_speed: bool = False,
    device: str = "CPU",
    ov_cache_dir: str | os.PathLike[str] | None = None,
) -> EvalReport:
    """Compare compression presets with the uncompressed model on the same text.

    The defaults are a quick run (about a minute for a 135M model on 2 cores once its exports are cached);
    ``max_tokens=4096, num_prompts=4, speed_runs=3`` is the thorough one (``THOROUGH``). The fp32 reference
    runs once; the candidates are then loaded one at a time and compared with its stored results.

    Args:
        model: Hub id or checkpoint folder (or an fp32/fp16 OpenVINO export).
        presets: preset names (or Preset/Compression objects) to compare with the fp32 reference.
        text: held-out text: a file, a string or a list of strings (default: the built-in text).
        prompts: prompts for the generation-divergence check (default: ``num_prompts`` slices of the text).
        calibration: text for data-aware presets (keep it apart from ``text``).
        window: perplexity context length.
        stride: perplexity step (default: window // 2).
        max_tokens: evaluate at most this many tokens of the text.
        new_tokens: greedy tokens generated per prompt (divergence) and for decode speed.
        speed_runs: timed decode runs per model (median reported), after a warm-up.
        prefill_speed: also measure prefill tokens/s (a ``PREFILL_PROBE_TOKENS`` prompt, one new token; for
            ``tune``'s workloads).

    Example:
        >>> report = evaluate("my-model", ["int8", "int4_asym_g64"], text="heldout.txt")
        >>> print(report.table())
    """
    from ..model.modeling import AutoModelForCausalLM

    stride = stride or max(1, window // 2)
    if window < 2 or stride < 1 or stride > window:
        raise OptionError(f"window={window}, stride={stride}: use window >= 2 and 1 <= stride <= window.")
    _check_presets(presets)
    texts = load_texts(default_text_path() if text is None else text)
    common = dict(device=device, ov_cache_dir=ov_cache_dir)
    # One compiled copy per model: scoring and greedy continuations both run on the transformers loop's request
    # (GenAI would compile the weights a second time); the speed is measured on GenAI, compiled afresh.
    load = dict(runtime="accuracy", backend="optimum", **common)
    names = row_names(presets)
    with stage(f"evaluate fp32 and {len(presets)} presets", total=1 + len(presets), unit="model") as bar:
        bar.set_postfix_str(REFERENCE)
        reference = AutoModelForCausalLM.from_pretrained(model, preset=REFERENCE, **load)
        ids = token_stream(texts, reference.tokenizer)[:max_tokens]
        if len(ids) <= window:
            raise OptionError(
                f"the text has {len(ids)} tokens, not more than one window ({window}): pass more text or a smaller "
                f"window= (perplexity needs at least window + 1 tokens)."
            )
        scored = _Text(ids, _windows(len(ids), window, stride),
                       _prompts(reference.tokenizer, ids, prompts, num_prompts, 32), new_tokens,
                       _prefill_prompts(ids) if prefill_speed else None)
        ref = _reference(reference, scored)
        row, folder = _accuracy(REFERENCE, reference, ref, scored)
        del reference  # candidates are compared with ``ref``: one model in memory at a time
        rows = [_with_speed(row, folder, scored, speed_runs, device)]
        bar.update()
        for preset, name in zip(presets, names):
            logger.info("evaluating preset %s", name)
            bar.set_postfix_str(name)
            candidate = AutoModelForCausalLM.from_pretrained(
                model, preset=preset, calibration=calibration if _data_aware(preset) else None, **load)
            row, folder = _accuracy(name, candidate, ref, scored)
            del candidate
            rows.append(_with_speed(row, folder, scored, speed_runs, device))
            bar.update()
    quick = thorough_flags(max_tokens if len(ids) == max_tokens else THOROUGH["max_tokens"],
                           THOROUGH["num_prompts"] if prompts else num_prompts, speed_runs)
    return EvalReport(str(model), len(ids), len(scored.spans), new_tokens, rows, num_prompts=len(scored.prompts),
                      speed_runs=speed_runs, peak_rss_mib=peak_rss_mib(), thorough=quick)


def _accuracy(name: str, model: Any, ref: _Reference, text: _Text) -> tuple[EvalRow, Path]:
    """One model's row without its speed (its scores and greedy continuations against the reference's), and its
    folder."""
    is_reference = name == REFERENCE
    s = ref.scores if is_reference else _score(model, ref, text)
    outputs = ref.continuations if is_reference else _continuations(model, text)
    first, fraction = _divergence(ref.continuations, outputs, text.new_tokens)
    row = EvalRow(
        preset=name, weights=model.ov_manifest.compression.describe(), perplexity=s.perplexity,
        ppl_change=s.perplexity / ref.scores.perplexity - 1, top1_agreement=s.agree / s.count,
        mean_kl=s.kl / s.count, first_divergence=first, divergent_fraction=fraction,
        ir_mib=ir_mib(model.model_save_dir), tokens_per_second=float("nan"),
    )
    return row, Path(model.model_save_dir)


def _with_speed(row: EvalRow, folder: Path, text: _Text, speed_runs: int, device: str) -> EvalRow:
    """The row with its decode speed, measured on the same IR compiled with the ``latency`` runtime."""
    from ..model.modeling import AutoModelForCausalLM

    fast = AutoModelForCausalLM.from_pretrained(folder, runtime="latency", device=device, load_tokenizer=False)
    row = replace(row, tokens_per_second=decode_speed(fast, text.prompts[0], text.new_tokens, speed_runs))
    if text.prefill_prompts is not None:
        row = replace(row, prefill_tokens_per_second=prefill_tokens_per_second(fast, text.prefill_prompts))
    return row


def _prefill_prompts(ids: list[int], count: int = 4) -> list[dict[str, Any]]:
    """``count`` prompts of ``PREFILL_PROBE_TOKENS`` tokens (fewer if the text is shorter), each starting
    elsewhere in the text: no prompt shares a prefix with another, so a prefix cache cannot help."""
    import torch

    from .workloads import PREFILL_PROBE_TOKENS

    length = min(PREFILL_PROBE_TOKENS, len(ids) - count)
    step = max(1, (len(ids) - length) // count)
    probes = [torch.tensor([ids[i * step : i * step + length]]) for i in range(count)]
    return [{"input_ids": p, "attention_mask": torch.ones_like(p)} for p in probes]


def prefill_tokens_per_second(model: Any, prompts: Sequence[dict[str, Any]]) -> float:
    """Median prompt tokens/s of fresh prompts (time to the first token); the first prompt warms up."""
    model.generate(**prompts[0], **greedy(1))
    times = []
    for prompt in prompts[1:]:
        start = time.perf_counter()
        model.generate(**prompt, **greedy(1))
        times.append((time.perf_counter() - start) / prompt["input_ids"].shape[1])
    return 1 / statistics.median(times)


def _check_presets(presets: Sequence[str | Any]) -> None:
    """Unknown preset names, before the reference is loaded and run."""
    from ..config.presets import get_preset

    for preset in presets:
        if isinstance(preset, str):
            get_preset(preset)


def row_names(presets: Sequence[str | Any]) -> list[str]:
    """One distinct report row name per preset, none equal to the reference's.

    A name for a preset name or a ``Preset``; the settings for a ``Compression`` (``int4_asym_g32_r0.8``);
    ``-2``, ``-3`` ... after a name already taken, so that no row replaces another.
    """
    taken, names = {REFERENCE}, []
    for preset in presets:
        base = preset if isinstance(preset, str) else getattr(preset, "name", None) or _settings_name(preset)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names.append(name)
    return names


def _settings_name(compression: Any) -> str:
    """``int4 asym g32 ratio=0.8 +awq`` -> ``int4_asym_g32_r0.8_awq``."""
    return compression.describe().replace(" ratio=", "_r").replace(" +", "_").replace("+", "_").replace(" ", "_")


def _data_aware(preset: Any) -> bool:
    from ..config.presets import PRESETS, Compression, Preset

    if isinstance(preset, str):
        return preset in PRESETS and PRESETS[preset].compression.data_aware
    if isinstance(preset, Preset):
        return preset.compression.data_aware
    return isinstance(preset, Compression) and preset.data_aware
