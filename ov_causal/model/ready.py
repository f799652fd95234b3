"""Recognise a model GenAI can run as it is, without importing torch, transformers, optimum or nncf.

"Ready" means: an OpenVINO export folder (stateful, with the OpenVINO tokenizer and detokenizer), or a
checkpoint whose export is already in the export cache under the key ``from_pretrained`` would use.
Then ``openvino_genai.LLMPipeline`` can load the folder directly, with the OpenVINO properties a loaded
model's GenAI engine would get, and a process reaches its first token as fast as a bare GenAI script.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..config.presets import Preset, Runtime
from ..config.sampling import torch_seed_draw  # noqa: F401  (its home now; kept importable here)
from ..convert.sources import CONFIG_FILE, GENERATION_CONFIG_FILE
from .backends import MAPPED, NEUTRAL, NO_OP
from .plan import plan_load

# The attributes ``engines.genai_config`` reads; transformers (5.x) leaves them all None unless the
# folder's generation_config.json sets them, and genai_config applies the defaults.
HF_DEFAULTS: dict[str, Any] = dict.fromkeys((
    "max_new_tokens", "max_length", "min_new_tokens", "min_length", "eos_token_id", "stop_strings",
    "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences", "num_beams", "num_beam_groups",
    "diversity_penalty", "length_penalty", "early_stopping", "do_sample", "temperature", "top_k", "top_p", "min_p",
    "prompt_lookup_num_tokens", "max_matching_ngram_size", "num_assistant_tokens",
))


@dataclass(frozen=True)
class ReadyFolder:
    """A folder ``openvino_genai.LLMPipeline`` can load as it is, and the properties to load it with."""

    folder: Path
    device: str
    properties: dict[str, str] = field(default_factory=dict)


def find_ready(
    model: str | os.PathLike[str],
    preset: str | Preset | None = None,
    runtime: str | Runtime | None = None,
    device: str = "CPU",
    ov_cache_dir: str | os.PathLike[str] | None = None,
    ov_config: Mapping[str, Any] | None = None,
) -> ReadyFolder | None:
    """The folder and properties ``from_pretrained(model, preset=, runtime=, device=, ov_config=)`` would give GenAI,
    when no export, compression or tokenizer conversion is needed; else None (``plan.plan_load`` says why).

    Raises what ``from_pretrained`` raises for a missing model, an unknown preset or device.
    """
    plan = plan_load(model, preset=preset, runtime=runtime, device=device, ov_cache_dir=ov_cache_dir,
                     ov_config=ov_config)
    return ReadyFolder(plan.folder, plan.device, plan.properties) if plan.folder is not None else None


def ready_folder(
    model: str | os.PathLike[str], preset: str | None = None, ov_cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The folder GenAI can load for ``model`` (an export folder, or a checkpoint's cached export), or None."""
    ready = find_ready(model, preset, ov_cache_dir=ov_cache_dir)
    return None if ready is None else ready.folder


def generation_defaults(folder: Path) -> SimpleNamespace | None:
    """The folder's generation settings as transformers reads them (generation_config.json, else config.json),
    with transformers' defaults; None when a setting only the transformers loop has is set."""
    settings: dict[str, Any] = {}
    for name in (GENERATION_CONFIG_FILE, CONFIG_FILE):
        try:
            settings = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if name == CONFIG_FILE:
            settings = {k: v for k, v in settings.items() if k in HF_DEFAULTS or k == "pad_token_id"}
        break
    for key, value in settings.items():
        if key in MAPPED or key in NEUTRAL or value in (None, False, 0, [], {}) or NO_OP.get(key) == value:
            continue
        return None
    return SimpleNamespace(**{**HF_DEFAULTS, **{k: v for k, v in settings.items() if k in HF_DEFAULTS}})
