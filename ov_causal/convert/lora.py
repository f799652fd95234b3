"""LoRA fusion: PEFT adapters merged into the base weights before export (PEFT ``merge_and_unload``)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoraError, ModelSourceError, UnsupportedModelError
from .sources import CONFIG_FILE

SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"

LoraSpec = str | os.PathLike | Mapping[str, float] | Sequence[str | os.PathLike | tuple[str, float]]
PICKLE_KEYWORD = "lora_allow_pickle=True"


@dataclass(frozen=True)
class Adapter:
    """One PEFT LoRA adapter folder and its weight in the combination."""

    path: Path
    weight: float = 1.0


def parse_adapters(lora: LoraSpec | None) -> list[Adapter]:
    """Accept a path, ``{path: weight}``, or a list of paths / ``(path, weight)`` pairs."""
    if lora is None:
        return []
    if isinstance(lora, (str, os.PathLike)):
        items: list[tuple[Any, Any]] = [(lora, 1.0)]
    elif isinstance(lora, Mapping):
        items = list(lora.items())
    elif isinstance(lora, Sequence):
        items = [(item, 1.0) if isinstance(item, (str, os.PathLike)) else tuple(item) for item in lora]
    else:
        raise LoraError(f"lora={lora!r} is not valid: pass a path, {{path: weight}}, or a list of (path, weight).")
    adapters = []
    for path, weight in items:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise LoraError(f"the weight of adapter {str(path)!r} is {weight!r}: use a finite number such as 0.5.")
        adapters.append(Adapter(Path(path).expanduser(), float(weight)))
    if not adapters:
        raise LoraError("lora= is empty: pass at least one adapter folder.")
    total = sum(a.weight for a in adapters)
    if total <= 0 or any(abs(a.weight) > 10 for a in adapters):
        raise LoraError(
            f"adapter weights {[a.weight for a in adapters]} do not make a sensible combination: use positive "
            "weights (typically summing to 1, e.g. {'a': 0.7, 'b': 0.3}), each within [-10, 10]."
        )
    return adapters


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoraError(f"{path} cannot be read ({exc}): save the adapter again with PEFT's save_pretrained.") from exc
    if not isinstance(config, dict):
        raise LoraError(f"{path} holds a JSON {type(config).__name__}, not an object: it is not a PEFT adapter "
                        "config. Save the adapter again with PEFT's save_pretrained.")
    return config


def check_adapter(adapter: Adapter, allow_pickle: bool, keyword: str = PICKLE_KEYWORD) -> dict[str, Any]:
    """Refuse a missing, non-LoRA or pickle-only adapter; return its adapter_config.json.

    ``keyword`` is the opt-in a refused pickle adapter's message names (the caller's spelling of it).
    """
    if not adapter.path.is_dir():
        raise ModelSourceError(f"LoRA adapter folder {str(adapter.path)!r} does not exist.")
    config_path = adapter.path / "adapter_config.json"
    if not config_path.is_file():
        raise LoraError(f"{str(adapter.path)!r} has no adapter_config.json: it is not a PEFT adapter folder.")
    config = _read_config(config_path)
    if config.get("peft_type", "LORA") != "LORA":
        raise LoraError(f"{str(adapter.path)!r} is a {config.get('peft_type')} adapter; only LoRA can be fused.")
    if not (adapter.path / SAFE_WEIGHTS).is_file():
        if not (adapter.path / PICKLE_WEIGHTS).is_file():
            raise LoraError(f"{str(adapter.path)!r} has no {SAFE_WEIGHTS} (nor {PICKLE_WEIGHTS}).")
        if not allow_pickle:
            raise LoraError(
                f"{str(adapter.path)!r} only has {PICKLE_WEIGHTS}, a pickle file: loading it can run code. "
                f"Convert it to {SAFE_WEIGHTS}, or pass {keyword} if you trust its author.", keyword
            )
    return config


def adapter_tensors(adapter: Adapter) -> tuple[Path, dict[str, Any]]:
    """(weights file, its tensors), with an unreadable file a ``LoraError`` naming it."""
    import torch

    safe = adapter.path / SAFE_WEIGHTS
    path = safe if safe.is_file() else adapter.path / PICKLE_WEIGHTS
    try:
        if path == safe:
            from safetensors.torch import load_file

            return path, load_file(path)
        return path, torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and torch raise many types for a damaged file
        raise LoraError(
            f"{path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}): "
            "the file is damaged or not a PEFT adapter. Save the adapter again with PEFT's save_pretrained."
        ) from exc


def check_finite(path: Path, tensors: Mapping[str, Any]) -> None:
    """Refuse adapter weights holding NaN or infinity (a diverged training run): they would wreck the model."""
    import torch

    bad = [name for name, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point()
           and not bool(torch.isfinite(t).all())]
    if bad:
        raise LoraError(
            f"{path} holds NaN or infinite values in {len(bad)} tensor(s), e.g. {bad[0]!r}: fused, they would break "
            "every output. Use a checkpoint of the adapter from before its training diverged."
        )


def _module_of(key: str) -> str:
    """'base_model.model.model.layers.0.q_proj.lora_A.weight' -> 'model.layers.0.q_proj'."""
    key = key.removeprefix("base_model.model.")
    return key.split(".lora_", 1)[0] if ".lora_" in key else key.rsplit(".", 1)[0]


def check_targets(path: Path, tensors: Mapping[str, Any], modules: set[str], base: Path) -> None:
    """Refuse adapter tensors named for modules the base lacks (PEFT would leave them out with a warning)."""
    strays = sorted({_module_of(k) for k in tensors} - modules)
    if strays:
        raise LoraError(
            f"{path} has tensors for {len(strays)} module(s) the base model {str(base)!r} lacks, e.g. {strays[0]!r}: "
            "the adapter does not fit the base model and would not be applied. Check that it was trained on this base."
        )


def check_base(base: Path) -> None:
    config = json.loads((base / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "quantized")
        raise UnsupportedModelError(
            f"the base model {str(base)!r} is {method}-quantized: LoRA cannot be fused into quantized weights. "
            "Use the unquantized checkpoint as the base; ov_causal compresses after fusing (preset=)."
        )


def fuse(base: Path, adapters: list[Adapter], allow_pickle: bool = False, trust_remote_code: bool = False,
         keyword: str = PICKLE_KEYWORD) -> Any:
    """The base model (torch, float32) with the weighted sum of the adapters merged into its weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    check_base(base)
    for adapter in adapters:
        check_adapter(adapter, allow_pickle, keyword)
    weights = [adapter_tensors(adapter) for adapter in adapters]
    for path, tensors in weights:
        check_finite(path, tensors)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32", trust_remote_code=trust_remote_code)
    modules = {name for name, _ in model.named_modules()}
    names = [f"adapter{i}" for i in range(len(adapters))]
    try:
        peft_model = PeftModel.from_pretrained(model, adapters[0].path, adapter_name=names[0])
        for name, adapter in zip(names[1:], adapters[1:]):
            peft_model.load_adapter(adapter.path, adapter_name=name)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise LoraError(
            f"the adapter does not fit the base model {str(base)!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Check that it was trained on this base."
        ) from exc
    for path, tensors in weights:
        check_targets(path, tensors, modules, base)
    if len(adapters) > 1 or adapters[0].weight != 1.0:
        # "cat" stacks the low-rank factors: the merged delta is exactly sum(weight_i * B_i @ A_i).
        peft_model.add_weighted_adapter(names, [a.weight for a in adapters], "combined", combination_type="cat")
        peft_model.set_adapter("combined")
    return peft_model.merge_and_unload()


@contextmanager
def fused_checkpoint(base: Path, adapters: list[Adapter], **options: Any) -> Iterator[Path]:
    """A temporary checkpoint folder with the adapters fused in (tokenizer and configs copied from the base)."""
    with tempfile.TemporaryDirectory(prefix="ov_causal-fused-") as tmp:
        fuse_into(base, adapters, Path(tmp), **options)
        yield Path(tmp)


def fuse_into(base: Path, adapters: list[Adapter], out: Path, **options: Any) -> None:
    model = fuse(base, adapters, **options)
    model.save_pretrained(out)
    for item in base.iterdir():  # tokenizer, generation config and the like
        if item.is_file() and not (out / item.name).exists() and not item.name.endswith((".safetensors", ".bin")):
            shutil.copy2(item, out / item.name)


def fuse_lora(
    base: str | os.PathLike[str],
    adapter: LoraSpec,
    out_dir: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Write the base checkpoint with LoRA adapter(s) fused in, as the OpenVINO LoRA recipe does.

    Args:
        base: a local transformers checkpoint folder.
        adapter: an adapter folder, ``{folder: weight}``, or a list of folders / (folder, weight).
        out_dir: where the fused checkpoint appears (built beside it, moved into place when complete).
        allow_pickle: accept ``adapter_model.bin`` (pickle) adapters.

    Example:
        >>> fuse_lora("llama-base", "my-adapter", "llama-fused")
    """
    from .export import publish, staging_folder

    base_path = Path(base)
    if not (base_path / CONFIG_FILE).is_file():
        raise ModelSourceError(f"{str(base)!r} is not a transformers checkpoint folder (no config.json).")
    target = Path(out_dir)
    with staging_folder(target) as tmp:
        fuse_into(base_path, parse_adapters(adapter), tmp, allow_pickle=allow_pickle,
                  trust_remote_code=trust_remote_code, keyword="allow_pickle=True")
        publish(tmp, target)
    return target
