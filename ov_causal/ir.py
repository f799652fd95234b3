"""Facts read off an OpenVINO model: how its weights are stored, whether it is stateful, its size."""

from __future__ import annotations

from collections import Counter
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
    """(symmetric, group size) of the first int4 weight: signed i4 is symmetric, u4 asymmetric."""
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("u4", "i4"):
            shape = list(op.shape)
            if len(shape) == 3 and shape[-1] > 1:
                return op.get_element_type().get_type_name() == "i4", shape[-1]
            if len(shape) == 2 and shape[-1] > 1:
                return op.get_element_type().get_type_name() == "i4", -1
    raise ValueError("the model has no int4 weights")


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
