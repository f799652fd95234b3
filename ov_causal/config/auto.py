"""``preset="auto"``: the choice ``tune`` recorded for a checkpoint, else a rule by model size and CPU.

Tuned choices live in ``tuned.json`` at the export cache's root, one record per checkpoint key. This
module reads and formats them and applies the rule; its callers pass the cache root, the checkpoint's
key (``tuned_key``) and the CPU probe, so that it needs nothing above the config layer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .presets import ONE_BILLION

TUNED_FILE = "tuned.json"
INT4_MARGIN = 0.9  # int4 is chosen by the rule only when its matmuls take at most 90% of int8's time


def tuned_key(model: str | os.PathLike[str], fingerprint: Callable[[Path], str]) -> str:
    """The key of a checkpoint in ``tuned.json``: a local folder by its content, a Hub id by its name."""
    path = Path(model)
    return f"local:{fingerprint(path)}" if path.is_dir() else f"hub:{model}"


def tuned_file(root: Path) -> Path:
    """Where the tuned choices of the export cache rooted at ``root`` are kept."""
    return root / TUNED_FILE


def recall_all(root: Path) -> dict[str, dict[str, Any]]:
    """Every tuned choice under ``root`` (an empty dict when there is none or the file is unreadable)."""
    try:
        return json.loads(tuned_file(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def tuned_record(preset: str, objective: str, max_ppl_increase: float, ppl_change: float,
                 tokens_per_second: float, text_tokens: int) -> dict[str, Any]:
    """One tuned choice as ``tuned.json`` and the manifest store it (``tuned_at`` is now)."""
    return {"preset": preset, "objective": objective, "max_ppl_increase": max_ppl_increase,
            "ppl_change": ppl_change, "tokens_per_second": tokens_per_second, "text_tokens": text_tokens,
            "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def with_record(root: Path, key: str, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tuned choices under ``root`` with ``record`` stored for ``key`` (the caller writes them back)."""
    registry = recall_all(root)
    registry[key] = record
    return registry


def auto_preset(key: str, num_parameters: int | None, root: Path,
                speeds: Callable[[], Mapping[str, float]]) -> tuple[str, str]:
    """(preset, reason) for ``preset="auto"``.

    1. A choice made by ``tune`` for this checkpoint (``key``, see ``tuned_key``), if ``root`` holds one.
    2. Otherwise: up to 1B parameters, ``int8`` (near-lossless; int8 decodes faster than fp32 on CPUs).
       Above, whichever of ``int8`` and ``int4_asym_g128`` the probe ``speeds`` (seconds per pass,
       by ``int8``/``int4``) finds faster on this CPU (int4 only when at least 10% faster: it costs
       more accuracy).
    """
    registry = recall_all(root)
    if key in registry:
        record = registry[key]
        return record["preset"], f"tuned on {record['tuned_at']} ({record['objective']}, " \
            f"budget +{record['max_ppl_increase']:.1%})"
    if num_parameters is None or num_parameters <= ONE_BILLION:
        return "int8", "rule: up to 1B parameters -> int8"
    measured = speeds()
    if measured["int4"] < INT4_MARGIN * measured["int8"]:
        ratio = measured["int8"] / measured["int4"]
        return "int4_asym_g128", f"rule: >1B parameters and int4 matmuls {ratio:.2f}x faster than int8 here"
    return "int8", f"rule: >1B parameters and int4 not faster than int8 on this CPU ({dict(measured)})"
