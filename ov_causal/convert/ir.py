"""Facts read off an OpenVINO model: how its weights are stored, whether it is stateful, its size."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

# Element type names of weight constants, as OpenVINO reports them.
_FORMATS = {"u4": "int4", "i4": "int4", "u8": "int8", "i8": "int8", "f16": "fp16", "bf16": "fp16", "f32": "fp32"}


def weight_formats(model: Any) -> Counter[str]:
    """Count weight matrices by storage format: int4, int8, fp16, fp32.

    A weight is a constant of rank >= 2 with at least 1024 elements whose last dimension is not 1
    (this leaves out the per-group scales and zero points of compressed weights).
    """
    counts: Counter[str] = Counter()
    for op in model.get_ops():
        if op.get_type_name() != "Constant":
            continue
        shape = list(op.shape)
        if len(shape) < 2 or shape[-1] == 1 or _elements(shape) < 1024:
            continue
        fmt = _FORMATS.get(op.get_element_type().get_type_name())
        if fmt:
            counts[fmt] += 1
    return counts


def _elements(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def dominant_format(model: Any) -> str:
    """The lowest-precision format the model's weights use (int4 < int8 < fp16 < fp32)."""
    counts = weight_formats(model)
    return next((fmt for fmt in ("int4", "int8", "fp16", "fp32") if counts.get(fmt)), "fp32")


def int4_layout(model: Any) -> tuple[bool, int]:
    """(symmetric, group size) of the int4 weights: signed i4 is symmetric, u4 asymmetric.

    The group size is the largest one used: layers whose channels it does not divide were given a
    smaller group (NNCF's group-size fallback), never a larger one; -1 when every layer is per-channel.
    """
    symmetric, groups = None, []
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("u4", "i4"):
            shape = list(op.shape)
            if len(shape) in (2, 3) and shape[-1] > 1:
                symmetric = op.get_element_type().get_type_name() == "i4" if symmetric is None else symmetric
                groups.append(shape[-1] if len(shape) == 3 else -1)
    if symmetric is None:
        raise ValueError("the model has no int4 weights")
    return symmetric, max(groups)


@dataclass(frozen=True)
class LayerWeight:
    """How one MatMul's weight is stored: format, int4 group size (-1 per channel, 0 not int4), input channels."""

    format: str
    group_size: int
    channels: int

    def describe(self) -> str:
        if self.format != "int4":
            return self.format
        return "int4 per-channel" if self.group_size == -1 else f"int4 g{self.group_size}"


_DECOMPRESSION_OPS = ("Convert", "Reshape", "Multiply", "Subtract", "Transpose")


def _weight_constant(node: Any) -> Any | None:
    """The Constant behind a MatMul weight input, through its decompression ops (Convert, Multiply, ...)."""
    for _ in range(8):
        if node.get_type_name() == "Constant":
            return node
        if node.get_type_name() not in _DECOMPRESSION_OPS:
            return None
        node = node.input_value(0).get_node()
    return None


def layer_name(matmul: Any) -> str:
    """'model.layers.0.mlp.down_proj' from '__module.model.layers.0.mlp.down_proj/aten::linear/MatMul'."""
    name = matmul.get_friendly_name().split("/")[0]
    return name.removeprefix("__module.")


def layer_weights(model: Any) -> dict[str, LayerWeight]:
    """Every MatMul with a constant weight, in execution order, with how that weight is stored."""
    layers: dict[str, LayerWeight] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        const = _weight_constant(op.input_value(1).get_node())
        if const is None:
            continue
        fmt = _FORMATS.get(const.get_element_type().get_type_name())
        partial = op.input_value(1).get_partial_shape()
        if fmt is None or not partial.is_static or len(partial) != 2:
            continue
        weight_shape = list(partial.to_shape())
        channels = weight_shape[-1] if op.get_attributes().get("transpose_b") else weight_shape[-2]
        shape = list(const.shape)
        group = (shape[-1] if len(shape) == 3 else -1) if fmt == "int4" else 0
        layers[layer_name(op)] = LayerWeight(fmt, group, channels)
    return layers


def group_size_fallback(model: Any, group_size: int, min_group_size: int = 32) -> dict[str, str]:
    """The layers of an int4 model that could not use ``group_size``, and what they got instead.

    A layer falls back when ``group_size`` does not divide its input channels: NNCF's ADJUST mode gives
    it the largest power-of-two group that does (if >= ``min_group_size``), else int8. Returns
    {layer name: "int4 g64" | "int8"}; the last MatMul (the LM head, int8 in every int4 preset)
    and layers a ratio < 1 put in int8 on purpose are not fallbacks.
    """
    if group_size <= 0:
        return {}
    layers = list(layer_weights(model).items())[:-1]  # the LM head is int8 by design
    fallback = {}
    for name, weight in layers:
        if weight.channels % group_size == 0:
            continue
        adjustable = weight.channels & -weight.channels >= min_group_size  # largest power of two dividing it
        if not (weight.format == "int8" and adjustable):
            fallback[name] = weight.describe()
    return fallback


def is_stateful(model: Any) -> bool:
    return len(model.get_sinks()) > 0


def ir_mib(folder: Any) -> float:
    """Size of the IR files (``openvino_model.xml``/``.bin``) in a folder, in MiB."""
    from pathlib import Path

    return sum(p.stat().st_size for p in Path(folder).glob("openvino_model.*")) / 2**20


def parameter_count(model: Any) -> int:
    """Weights in the model: elements of its floating-point and compressed constants, without the
    per-group scales and zero points of compressed weights (those have a last dimension of 1)."""
    total = 0
    for op in model.get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type().get_type_name() not in _FORMATS:
            continue
        shape = list(op.shape)
        if shape and not (len(shape) >= 2 and shape[-1] == 1):
            total += _elements(shape)
    return total
