"""GGUF files (llama.cpp's format): what one holds, its content hash, and the two ways it becomes an export folder.

Kept as is: OpenVINO GenAI reads the file and writes the IR and OpenVINO tokenizers it builds from it, with the
file's own quantized weights (``convert_kept``). Dequantized: transformers reads it into float32 torch weights,
saved as a checkpoint that the normal export compresses with a preset (``dequantize``). Both need the ``gguf``
package (the ``gguf`` extra) for the file's metadata, the transformers config and the Hugging Face tokenizer.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ExportError, UnsupportedModelError

GGUF_LINK = "model.gguf"  # the name GenAI reads the file under, in the staging folder (a symlink, removed after)

# What openvino_genai 2026.4's GGUF reader accepts, tried here with files the gguf package writes: Q4_0, Q4_1, Q8_0,
# F16 and F32 load; Q5_0, Q5_1 ("gguf_tensor_to_f16 failed") and BF16 ("Unsupported quantization type") do not.
# Q4_K and Q6_K have readers in GenAI's library (untested here: the gguf package cannot write K-quants).
GENAI_TENSOR_TYPES = ("F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K")
# Architectures GenAI builds a graph for (tried: llama, qwen2 and qwen3 load; gemma, phi3, mistral are refused).
GENAI_ARCHITECTURES = ("llama", "qwen2", "qwen3")
_HASHED: dict[tuple[int, int, int, int], str] = {}  # (device, inode, size, mtime_ns) -> sha256, in this process


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file holds, read from its header (no weights read)."""

    architecture: str
    file_type: str  # llama.cpp's name for the file's quantization, e.g. 'Q4_1', 'Q4_K_M'
    tensor_types: dict[str, int]  # tensor type -> how many tensors of it
    parameters: int

    def unsupported_by_genai(self) -> str:
        """Why GenAI's reader cannot keep this file as it is, or ''."""
        if self.architecture not in GENAI_ARCHITECTURES:
            return (f"its architecture {self.architecture!r} is not one OpenVINO GenAI's GGUF reader builds (it builds "
                    f"{', '.join(GENAI_ARCHITECTURES)})")
        refused = sorted(set(self.tensor_types) - set(GENAI_TENSOR_TYPES))
        if refused:
            return (f"it has {', '.join(f'{t} ({self.tensor_types[t]} tensors)' for t in refused)} weights, which "
                    f"OpenVINO GenAI's GGUF reader does not read (it reads {', '.join(GENAI_TENSOR_TYPES)})")
        return ""


def gguf_module() -> Any:
    """The ``gguf`` package, or MissingExtraError naming the ``gguf`` extra."""
    return require("gguf", "gguf", " (or pip install gguf).")


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("general.architecture", "general.file_type")


class _Header:
    """A reader of a GGUF header (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) over the mapped file:
    the few values we need, the others skipped. gguf's own GGUFReader parses every value (6 s for a 49k-token
    vocabulary; this takes ~0.1 s)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer, self.pos = buffer, 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buffer, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.unpack("<Q")
        if self.pos + size > len(self.buffer):
            raise ValueError("the header runs past the end of the file")
        self.pos += size
        return bytes(self.buffer[self.pos - size:self.pos]).decode("utf-8", errors="replace")

    def skip_array(self) -> None:
        item, count = self.unpack("<I"), self.unpack("<Q")
        if item in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[item]) * count
        elif item == _STRING:  # a vocabulary: tens of thousands of (length, bytes)
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.buffer, self.pos)[0]
        else:
            for _ in range(count):
                self.value(item)

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            return self.skip_array()
        return self.unpack(_SCALARS[kind])

    def read(self) -> tuple[dict[str, Any], list[tuple[int, int]]]:
        """The wanted values, and (type id, element count) of every tensor."""
        if bytes(self.buffer[:4]) != b"GGUF":
            raise ValueError("no GGUF magic number at the start of the file")
        self.pos = 8  # magic, version
        tensors, keys = self.unpack("<Q"), self.unpack("<Q")
        values = {}
        for _ in range(keys):
            key, kind = self.string(), self.unpack("<I")
            value = self.value(kind)
            if key in _WANTED:
                values[key] = value
        infos = []
        for _ in range(tensors):
            self.string()
            dims = [self.unpack("<Q") for _ in range(self.unpack("<I"))]
            kind = self.unpack("<I")
            self.pos += 8  # offset of the data
            infos.append((kind, math.prod(dims)))
        return values, infos


def _type_name(gguf: Any, kind: int) -> str:
    try:
        return gguf.GGMLQuantizationType(kind).name
    except ValueError:
        return f"type {kind}"


def _file_type(gguf: Any, value: Any, types: Counter) -> str:
    if value is not None:
        try:
            return gguf.LlamaFileType(int(value)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    return types.most_common(1)[0][0] if types else "unknown"


def read_info(path: Path) -> GGUFInfo:
    """The architecture, quantization and size of a GGUF file (its header only)."""
    gguf = gguf_module()
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            values, tensors = _Header(buffer).read()
        architecture = str(values["general.architecture"])
    except (KeyError, ValueError, OSError, struct.error, UnicodeDecodeError) as exc:
        raise UnsupportedModelError(
            f"{str(path)!r} cannot be read as a GGUF file ({type(exc).__name__}: {exc}). Check that the file is "
            "complete (a download that stopped leaves a truncated file)."
        ) from exc
    types = Counter(_type_name(gguf, kind) for kind, _ in tensors)
    file_type = _file_type(gguf, values.get("general.file_type"), types)
    return GGUFInfo(architecture, file_type, dict(types), sum(n for _, n in tensors))


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes (the export cache's key: a copy under another name is the same model). Hashed
    once per process for a given file (device, inode, size and mtime)."""
    stat = path.stat()
    known = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if known not in _HASHED:
        with path.open("rb") as f:
            _HASHED[known] = hashlib.file_digest(f, "sha256").hexdigest()
    return _HASHED[known]


def fixed_tokenizer(tokenizer: Any) -> Any:
    """transformers' tokenizer converted from a GGUF, rebuilt as a ``PreTrainedTokenizerFast`` with a ByteLevel
    post-processor and decoder: as converted, it reloads after ``save_pretrained`` with a Metaspace pre-tokenizer
    (garbled text), and its decoder chain breaks ``openvino_tokenizers.convert_tokenizer``. Tokenizers that are
    not byte-level BPE (SentencePiece-style ones) are returned as they are."""
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer
    if type(backend.pre_tokenizer).__name__ != "ByteLevel":
        return tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token or tokenizer.eos_token,
        unk_token=tokenizer.unk_token,
        chat_template=tokenizer.chat_template,
    )


def write_hf_files(path: Path, folder: Path) -> None:
    """config.json, generation_config.json and the Hugging Face tokenizer of the GGUF file ``path``, into ``folder``
    (what optimum-intel and transformers' pipeline read beside an IR)."""
    from transformers import AutoConfig, GenerationConfig

    gguf_module()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    if not config.architectures and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]  # as a saved model has it
    config.save_pretrained(folder)
    GenerationConfig.from_model_config(config).save_pretrained(folder)
    _hf_tokenizer(path).save_pretrained(folder)


def _hf_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return fixed_tokenizer(AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))


def convert_kept(path: Path, info: GGUFInfo, folder: Path) -> None:
    """The IR and OpenVINO tokenizers GenAI builds from the GGUF file, with its own quantized weights, into
    ``folder`` (an empty staging folder), and the Hugging Face files beside them."""
    import openvino_genai

    link = folder / GGUF_LINK
    os.symlink(path.resolve(), link)  # GenAI writes the IR beside the file it reads
    try:
        pipeline = openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
        del pipeline
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise UnsupportedModelError(
            f"OpenVINO GenAI could not read {str(path)!r} (GGUF {info.file_type}, {info.architecture}): "
            f"{detail[-1][:300] if detail else exc}. Pass preset= (e.g. preset='int8') to dequantize the file and "
            "export it with that preset instead."
        ) from exc
    finally:
        link.unlink()
    if not (folder / "openvino_model.xml").is_file():
        raise ExportError(f"OpenVINO GenAI read {str(path)!r} but wrote no openvino_model.xml into {folder}.")
    write_hf_files(path, folder)


def check_dequantizable(info: GGUFInfo, path: Path) -> None:
    """Refuse an architecture transformers cannot dequantize, naming the ones it can."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if info.architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{str(path)!r} is a GGUF {info.architecture!r} model, which transformers cannot read to dequantize it. "
            f"Architectures it reads: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}. Convert the original "
            "Hugging Face checkpoint instead."
        )


def dequantize(path: Path, folder: Path) -> None:
    """A float32 Hugging Face checkpoint (safetensors, config, tokenizer) of the GGUF file ``path``, into ``folder``."""
    from transformers import AutoModelForCausalLM

    gguf_module()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    model.save_pretrained(folder)  # with its config and generation config
    del model
    _hf_tokenizer(path).save_pretrained(folder)
