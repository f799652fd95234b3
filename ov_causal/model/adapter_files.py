"""A PEFT LoRA adapter read for OpenVINO GenAI's run-time LoRA: checked against the base export, scaled, wrapped.

GenAI reads PEFT's safetensors names, but not ``adapter_config.json``: it applies ``B @ A`` with scale 1
(measured on 2026.4.1: an adapter with ``lora_alpha == r`` matches PEFT, one with ``lora_alpha = 2 r`` does not),
and it silently skips tensors whose module the IR lacks (a warning on stdout only). So the tensors are read here,
checked against the export's own layers (names and shapes), ``lora_B`` scaled by each module's
``lora_alpha / r`` (``rank_pattern``, ``alpha_pattern`` and rsLoRA included), and handed to GenAI in memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..convert.lora import Adapter, adapter_tensors, check_adapter, check_finite
from ..errors import LoraError

PREFIX = "base_model.model."
FACTORS = {"lora_A.weight": "A", "lora_B.weight": "B"}  # a tensor key's ending -> its factor


@dataclass(frozen=True)
class AdapterFile:
    """A checked adapter: where it came from, its rank per module, and the GenAI ``Adapter`` built from it."""

    source: str  # the weights file, or "adapter_state_dict" (what error messages name)
    folder: Path | None
    modules: frozenset[str]  # the base's modules it changes, e.g. 'model.layers.0.self_attn.q_proj'
    ranks: Mapping[str, int]
    nbytes: int  # its tensors as GenAI holds them (float32)
    config: Mapping[str, Any] = field(repr=False)
    genai: Any = field(repr=False, default=None)  # openvino_genai.Adapter
    _buffer: Any = field(repr=False, default=None)  # the safetensors bytes the Adapter was built from


def base_layers(ir: Any) -> dict[str, tuple[int, int]]:
    """The export's linear layers GenAI can attach a LoRA to: module name -> (in features, out features).

    Read from the IR's MatMul ops (``__module.model.layers.0.self_attn.q_proj/aten::linear/MatMul``), whose weight
    input has a static shape whatever the weight compression.
    """
    layers: dict[str, tuple[int, int]] = {}
    for op in ir.get_ops():
        name = op.get_friendly_name()
        if op.get_type_name() != "MatMul" or not name.startswith("__module."):
            continue
        module = name.split("/", 1)[0].removeprefix("__module.")
        shape = op.input(1).get_partial_shape()
        if module in layers or shape.rank.get_length() != 2 or not shape.is_static:
            continue
        rows, cols = (int(d) for d in shape.to_shape())
        transposed = bool(op.get_attributes().get("transpose_b", False))
        layers[module] = (cols, rows) if transposed else (rows, cols)
    return layers


def read_adapter(folder: Path, layers: Mapping[str, tuple[int, int]], allow_pickle: bool = False) -> AdapterFile:
    """Read, check and scale a PEFT LoRA folder for the export whose ``base_layers`` are given.

    Raises ``LoraError`` naming the file and the problem: not a LoRA, a pickle without ``allow_pickle``, NaN/Inf
    weights, modules or shapes the base does not have, a rank or alpha that does not match the config.
    """
    config = check_adapter(Adapter(folder), allow_pickle, keyword="allow_pickle=True")
    path, tensors = adapter_tensors(Adapter(folder))
    return checked(str(path), folder, config, tensors, layers)


def checked(source: str, folder: Path | None, config: Mapping[str, Any], tensors: Mapping[str, Any],
            layers: Mapping[str, tuple[int, int]]) -> AdapterFile:
    """An ``AdapterFile`` from a config and its tensors (read from ``source``), checked against the base's layers."""
    check_config(source, config)
    check_finite(Path(source), tensors)
    factors = _factors(source, tensors)
    strays = sorted(set(factors) - set(layers))
    if strays:
        raise LoraError(
            f"{source} has LoRA weights for {len(strays)} module(s) the base model lacks, e.g. {strays[0]!r} (the "
            f"base's layers look like {next(iter(layers), '?')!r}): the adapter was trained for another model. "
            "Load an adapter trained on this base."
        )
    ranks = {module: _check_pair(source, module, pair, layers[module], config) for module, pair in factors.items()}
    scaled = {}
    for module, pair in factors.items():
        scale = _scale(config, module, ranks[module])
        scaled[f"{PREFIX}{module}.lora_A.weight"] = pair["A"].float().contiguous()
        scaled[f"{PREFIX}{module}.lora_B.weight"] = (pair["B"].float() * scale).contiguous()
    genai, buffer = _genai_adapter(scaled)
    nbytes = sum(t.numel() * t.element_size() for t in scaled.values())
    return AdapterFile(source, folder, frozenset(factors), ranks, nbytes, dict(config), genai, buffer)


def check_config(source: str, config: Mapping[str, Any]) -> None:
    """Refuse what GenAI's LoRA cannot apply (DoRA, trained biases, full modules) and a malformed rank or alpha."""
    unsupported = [key for key in ("use_dora", "lora_bias") if config.get(key)]
    if config.get("bias", "none") != "none":
        unsupported.append(f"bias={config['bias']!r}")
    if config.get("modules_to_save"):
        unsupported.append(f"modules_to_save={config['modules_to_save']}")
    if unsupported:
        raise LoraError(
            f"{source}: its config sets {', '.join(unsupported)}, which OpenVINO's run-time LoRA cannot apply. Fuse it "
            "before export instead: from_pretrained(base_checkpoint, lora=folder)."
        )
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise LoraError(f"{source}: its adapter_config.json has r={rank!r}; a LoRA rank is a positive integer.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise LoraError(f"{source}: its adapter_config.json has lora_alpha={alpha!r}; use a positive number.")


def _factors(source: str, tensors: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Tensor keys -> {module: {"A": lora_A, "B": lora_B}}; a key of any other kind is refused."""
    factors: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        ending = next((e for e in FACTORS if key.endswith("." + e)), None)
        if ending is None:
            raise LoraError(
                f"{source} holds {key!r}, which is not a LoRA A/B weight (embedding LoRA, DoRA magnitudes, biases and "
                "saved modules cannot be applied at run time). Fuse it before export: from_pretrained(base, lora=...)."
            )
        module = key.removeprefix(PREFIX)[: -len(ending) - 1]
        factors.setdefault(module, {})[FACTORS[ending]] = tensor
    for module, pair in factors.items():
        if set(pair) != {"A", "B"}:
            missing = "lora_B" if "A" in pair else "lora_A"
            raise LoraError(f"{source} has no {missing} weight for {module!r}: the file is incomplete.")
    if not factors:
        raise LoraError(f"{source} holds no LoRA weights.")
    return factors


def _pattern(pattern: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's ``rank_pattern`` / ``alpha_pattern`` lookup: a key matches a module name's tail."""
    for key, value in (pattern or {}).items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def _check_pair(source: str, module: str, pair: Mapping[str, Any], layer: tuple[int, int],
                config: Mapping[str, Any]) -> int:
    """The module's rank, after checking its A [r, in] and B [out, r] against the base layer and the config."""
    a, b = pair["A"], pair["B"]
    expected = _pattern(config.get("rank_pattern"), module, config["r"])
    if a.dim() != 2 or b.dim() != 2 or (tuple(a.shape[1:]), tuple(b.shape[:1])) != ((layer[0],), (layer[1],)):
        raise LoraError(
            f"{source}: {module!r} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, but the base's layer maps "
            f"{layer[0]} -> {layer[1]} features (expected lora_A (r, {layer[0]}), lora_B ({layer[1]}, r)): the adapter "
            "was trained for another model. Load an adapter trained on this base."
        )
    if a.shape[0] != b.shape[1] or a.shape[0] != expected:
        raise LoraError(
            f"{source}: {module!r} has rank {a.shape[0]} (lora_A) / {b.shape[1]} (lora_B), but adapter_config.json "
            f"says r={expected}: the weights and the config do not belong together. Save the adapter again with "
            "PEFT's save_pretrained."
        )
    return int(expected)


def _scale(config: Mapping[str, Any], module: str, rank: int) -> float:
    alpha = float(_pattern(config.get("alpha_pattern"), module, config["lora_alpha"]))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _genai_adapter(tensors: Mapping[str, Any]) -> tuple[Any, Any]:
    """``openvino_genai.Adapter`` from tensors, via safetensors bytes in memory (and those bytes, kept alive)."""
    import numpy as np
    import openvino
    import openvino_genai
    from safetensors.torch import save

    buffer = np.frombuffer(save(dict(tensors)), dtype=np.uint8).copy()
    return openvino_genai.Adapter(openvino.Tensor(buffer, shared_memory=True)), buffer
