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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.calibration import TextSource, load_texts, token_stream
from ..convert.ir import ir_mib
from ..convert.sources import DEMO_MODEL
from ..errors import OptionError
from ..ui.progress import stage
from .reports import EvalReport, EvalRow
from .runners import greedy

logger = logging.getLogger(__name__)

DEFAULT_PRESETS = ("int8", "int4_sym_g128", "int4_asym_g64")
REFERENCE = "fp32"


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


def _score_text(reference: Any, models: dict[str, Any], ids: list[int], window: int, stride: int) -> dict[str, _Scores]:
    scores = {name: _Scores() for name in [REFERENCE, *models]}
    spans = _windows(len(ids), window, stride)
    with stage(f"perplexity of {len(scores)} models", total=len(spans), unit="window") as bar:
        _score_windows(reference, models, ids, spans, scores, bar)
    return scores


def _score_windows(reference: Any, models: dict[str, Any], ids: list[int], spans: list[tuple[int, int, int]],
                   scores: dict[str, _Scores], bar: Any) -> None:
    import torch

    for begin, end, first in spans:
        chunk = torch.tensor([ids[begin:end]])
        targets = torch.tensor(ids[first:end])
        rows = slice(first - begin - 1, end - begin - 1)  # logits at position t predict token t + 1
        ref = _log_probs(reference, chunk)[rows]
        for name, model in [(REFERENCE, reference), *models.items()]:
            logp = ref if model is reference else _log_probs(model, chunk)[rows]
            s = scores[name]
            s.nll -= logp.gather(1, targets[:, None]).sum().item()
            s.agree += (logp.argmax(-1) == ref.argmax(-1)).sum().item()
            s.kl += (ref.exp() * (ref - logp)).sum().item()
            s.count += len(targets)
        bar.update()


def _divergence(reference: Any, model: Any, prompts: list[Any], new_tokens: int) -> tuple[float, float]:
    """Mean position of the first differing greedy token, and mean fraction of differing tokens."""
    firsts, fractions = [], []
    for prompt in prompts:
        n = prompt["input_ids"].shape[1]
        ref = reference.generate(**prompt, **greedy(new_tokens))[0, n:]
        out = model.generate(**prompt, **greedy(new_tokens))[0, n:]
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


def evaluate(
    model: str | os.PathLike[str],
    presets: Sequence[str | Any] = DEFAULT_PRESETS,
    text: TextSource | None = None,
    *,
    prompts: Sequence[str] | None = None,
    calibration: TextSource | None = None,
    window: int = 256,
    stride: int | None = None,
    max_tokens: int = 4096,
    new_tokens: int = 32,
    num_prompts: int = 4,
    speed_runs: int = 3,
    device: str = "CPU",
    ov_cache_dir: str | os.PathLike[str] | None = None,
) -> EvalReport:
    """Compare compression presets with the uncompressed model on the same text.

    Args:
        model: Hub id or checkpoint folder (or an fp32/fp16 OpenVINO export).
        presets: preset names (or Preset/Compression objects) to compare with the fp32 reference.
        text: held-out text: a file, a string or a list of strings (default: the built-in text).
        prompts: prompts for the generation-divergence check (default: slices of the text).
        calibration: text for data-aware presets (keep it apart from ``text``).
        window: perplexity context length.
        stride: perplexity step (default: window // 2).
        max_tokens: evaluate at most this many tokens of the text.
        new_tokens: greedy tokens generated per prompt (divergence) and for decode speed.

    Example:
        >>> report = evaluate("my-model", ["int8", "int4_asym_g64"], text="heldout.txt")
        >>> print(report.table())
    """
    from ..model.modeling import AutoModelForCausalLM

    stride = stride or max(1, window // 2)
    if window < 2 or stride < 1 or stride > window:
        raise OptionError(f"window={window}, stride={stride}: use window >= 2 and 1 <= stride <= window.")
    texts = load_texts(default_text_path() if text is None else text)
    common = dict(device=device, ov_cache_dir=ov_cache_dir)
    reference = AutoModelForCausalLM.from_pretrained(model, preset=REFERENCE, runtime="accuracy", **common)
    ids = token_stream(texts, reference.tokenizer)[:max_tokens]
    if len(ids) <= window:
        raise OptionError(
            f"the text has {len(ids)} tokens, not more than one window ({window}): pass more text or a smaller "
            f"window= (perplexity needs at least window + 1 tokens)."
        )
    models = {}
    with stage("load presets", total=len(presets), unit="preset") as bar:
        for preset, name in zip(presets, row_names(presets)):
            logger.info("evaluating preset %s", name)
            bar.set_postfix_str(name)
            models[name] = AutoModelForCausalLM.from_pretrained(
                model, preset=preset, runtime="accuracy", calibration=calibration if _data_aware(preset) else None,
                **common,
            )
            bar.update()
    scores = _score_text(reference, models, ids, window, stride)
    prompt_inputs = _prompts(reference.tokenizer, ids, prompts, num_prompts, 32)
    ref_ppl = math.exp(scores[REFERENCE].nll / scores[REFERENCE].count)
    rows = []
    with stage("divergence and speed", total=len(scores), unit="preset") as bar:
        for name, candidate in [(REFERENCE, reference), *models.items()]:
            bar.set_postfix_str(name)
            s = scores[name]
            first, fraction = _divergence(reference, candidate, prompt_inputs, new_tokens)
            fast = AutoModelForCausalLM.from_pretrained(
                candidate.model_save_dir, runtime="latency", device=device, load_tokenizer=False
            )
            ppl = math.exp(s.nll / s.count)
            rows.append(EvalRow(
                preset=name, weights=candidate.ov_manifest.compression.describe(), perplexity=ppl,
                ppl_change=ppl / ref_ppl - 1, top1_agreement=s.agree / s.count, mean_kl=s.kl / s.count,
                first_divergence=first, divergent_fraction=fraction,
                ir_mib=ir_mib(candidate.model_save_dir),
                tokens_per_second=decode_speed(fast, prompt_inputs[0], new_tokens, speed_runs),
            ))
            bar.update()
    return EvalReport(str(model), len(ids), len(_windows(len(ids), window, stride)), new_tokens, rows)


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
