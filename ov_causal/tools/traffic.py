"""Bytes a decode step reads, and how fast this machine can read memory: where single-stream decode time goes.

One greedy decode step of a small batch reads every weight the step multiplies with (the MatMul weights,
their int4/int8 scales and zero points) plus the KV cache so far; the embedding table is gathered one row
per token, so it counts only when the LM head reuses it (tied embeddings). ``bytes read x tokens/s`` is the
bandwidth a decode achieves; against ``memory_read_gb_s()`` it says how close the engine is to the limit.

Example:
    >>> step = decode_bytes("exported-folder", context_tokens=512)
    >>> achieved_gb_s = step * tokens_per_second / 1e9
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from ..convert.sources import IR_FILE
from ..errors import OptionError

# Ops between a weight constant and the MatMul/Gather that uses it (NNCF's decompression subgraph).
_PASS_THROUGH = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze"}
KV_BYTES = {"u8": 1, "f16": 2, "bf16": 2, "f32": 4}


def _users(node: Any) -> list[Any]:
    return [target.get_node() for out in node.outputs() for target in out.get_target_inputs()]


def _feeds_matmul(constant: Any) -> bool:
    """True when a path from the constant through decompression ops ends in a MatMul (a weight, its scale or its
    zero point); an embedding table only gathered from is not read whole."""
    todo = [constant]
    while todo:
        for user in _users(todo.pop()):
            if user.get_type_name() == "MatMul":
                return True
            if user.get_type_name() in _PASS_THROUGH:
                todo.append(user)
    return False


def weight_bytes_read(model: Any) -> int:
    """Bytes of the constants an ``openvino.Model`` multiplies with per decode step: the MatMul weights with their
    scales and zero points (and the few bytes of rotary frequencies; norm weights are left out)."""
    return sum(op.get_byte_size() for op in model.get_ops()
               if op.get_type_name() == "Constant" and _feeds_matmul(op))


def folder_weight_bytes(folder: str | os.PathLike[str]) -> int:
    """``weight_bytes_read`` of the IR in an exported model folder."""
    import openvino

    xml = Path(folder) / IR_FILE
    if not xml.is_file():
        raise OptionError(f"{str(folder)!r} has no {IR_FILE}: pass an exported model folder (ov-causal export).")
    return weight_bytes_read(openvino.Core().read_model(xml))


def kv_bytes_per_token(folder: str | os.PathLike[str], precision: str = "u8") -> int:
    """KV-cache bytes one token of context adds (keys and values of every layer), from the folder's config.json."""
    if precision not in KV_BYTES:
        raise OptionError(f"precision={precision!r} is not valid: use one of {', '.join(KV_BYTES)}.")
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * KV_BYTES[precision]


def decode_bytes(folder: str | os.PathLike[str], context_tokens: int, kv_precision: str = "u8") -> int:
    """Bytes one decode step reads at ``context_tokens`` of context: the weights plus the KV cache so far."""
    return folder_weight_bytes(folder) + context_tokens * kv_bytes_per_token(folder, kv_precision)


def memory_read_gb_s(size_mib: int = 512, repeats: int = 7) -> float:
    """This machine's memory read bandwidth: median GB/s of ``numpy.sum`` over an array much larger than the
    caches (a decode step streams its weights the same way: read once, nothing written back)."""
    import numpy as np

    data = np.ones(size_mib * 2**20 // 8)
    data.sum()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - start)
    return data.nbytes / statistics.median(times) / 1e9
