"""Small GGUF files for tests, written with the ``gguf`` package from SmolLM2's: fewer layers, other tensor types,
another architecture name, so that each file tests one thing the loader must accept or refuse."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_QUANTIZED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K")


def rewrite(src: Path, dst: Path, *, layers: int | None = None, tensor_type: str | None = None,
            architecture: str | None = None) -> Path:
    """Copy ``src`` to ``dst`` keeping the first ``layers`` blocks, with its quantized 2-D weights stored as
    ``tensor_type`` (dequantized and quantized again) and its architecture renamed to ``architecture``."""
    import gguf
    from gguf import quants

    reader = gguf.GGUFReader(src)
    old = reader.fields["general.architecture"].contents()
    arch = architecture or old
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == f"{old}.block_count" and layers is not None:
            value = layers
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key.replace(f"{old}.", f"{arch}.", 1), value, vtype, sub_type=sub)
    target = gguf.GGMLQuantizationType[tensor_type] if tensor_type else None
    for tensor in reader.tensors:
        block = re.match(r"blk\.(\d+)\.", tensor.name)
        if block and layers is not None and int(block.group(1)) >= layers:
            continue
        kind = tensor.tensor_type
        data = tensor.data
        if target is not None and kind.name in _QUANTIZED and target != kind:
            values = quants.dequantize(data, kind)
            data = quants.quantize(values.astype(np.float32), target) if target.name != "F16" else values.astype(
                np.float16)
            kind = target
        shape = [int(d) for d in reversed(tensor.shape)]  # GGUF lists dims fastest first
        writer.add_tensor(tensor.name, data, raw_shape=quants.quant_shape_to_byte_shape(shape, kind)
                          if kind.name not in ("F32", "F16") else shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
