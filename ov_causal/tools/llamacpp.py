"""llama.cpp's side of ``bench --against llama.cpp``: the GGUF file (read, or converted from a checkpoint) and
llama.cpp run through ``llama-cpp-python`` (the ``llamacpp`` extra).

Nothing of llama.cpp is needed to import this module: ``llama_cpp`` is imported when a runner is built, the
converter (``convert_hf_to_gguf.py``, in llama.cpp's sources and in the llama-cpp-python sdist, not in its
wheel) and ``llama-quantize`` are found on the PATH or passed by the user.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import MissingExtraError, ModelSourceError, OptionError

EXTRA = "llamacpp"
INSTALL_NOTE = (" (pip compiles llama.cpp from source: 12–45 minutes on 2 cores, measured 2026-12-03). Or pass "
                "only engines of ours: 'ov-causal bench' without --against.")
CONVERTER = "convert_hf_to_gguf.py"
QUANTIZE = "llama-quantize"
# GGUF types the converter writes itself, and those llama-quantize makes from its f16 output.
CONVERTED_TYPES = ("q8_0", "f16", "f32")
QUANTIZED_TYPES = ("q4_0", "q4_1", "q4_k_m")
# A GGUF's file type -> our nearest preset (the same bits; llama.cpp's blocks of 32 against our group sizes).
PAIRED_PRESET = {"F32": "fp32", "F16": "fp16", "BF16": "fp16", "Q8_0": "int8", "Q4_0": "int4_sym_g64",
                 "Q4_1": "int4_asym_g64", "Q4_K_M": "int4_asym_g64", "Q4_K_S": "int4_asym_g64"}


def llama_cpp() -> Any:
    """The ``llama_cpp`` module, or MissingExtraError saying how to install it and what that costs."""
    return require("llama_cpp", EXTRA, INSTALL_NOTE)


@dataclass(frozen=True)
class GGUFInfo:
    """What the report says about a GGUF file: its quantization, tensor bytes, vocabulary and context."""

    path: str
    file_type: str  # e.g. Q8_0, Q4_1 (llama.cpp's name without MOSTLY_)
    tensor_bytes: int
    vocab_size: int
    context_length: int

    @property
    def paired_preset(self) -> str | None:
        return PAIRED_PRESET.get(self.file_type)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types and field.types[0].name == "STRING" else int(value[0])


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read ``path``'s header with the ``gguf`` package (only its header and tensor table are read)."""
    gguf = require("gguf", EXTRA, INSTALL_NOTE)
    file = Path(path)
    if not file.is_file() or file.suffix.lower() != ".gguf":
        raise ModelSourceError(f"{os.fspath(path)!r} is not a .gguf file: pass the path of a GGUF model file.")
    try:
        reader = gguf.GGUFReader(str(file))
    except (ValueError, OSError) as exc:
        raise ModelSourceError(f"{str(file)!r} cannot be read as GGUF ({exc}).") from None
    arch = _field(reader, "general.architecture") or "llama"
    file_type = _field(reader, "general.file_type")
    type_name = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else "unknown"
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return GGUFInfo(str(file), type_name, sum(int(t.n_bytes) for t in reader.tensors),
                    len(tokens.data) if tokens is not None else 0, _field(reader, f"{arch}.context_length") or 2048)


def find_tool(name: str, given: str | os.PathLike[str] | None = None) -> str | None:
    """``given`` if it is a file, else ``name`` on the PATH (None when neither)."""
    if given is not None:
        if not Path(given).is_file():
            raise OptionError(f"{os.fspath(given)!r} does not exist: pass the path of llama.cpp's {name}.")
        return os.fspath(given)
    return shutil.which(name)


def convert_to_gguf(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], gguf_type: str = "q8_0",
                    converter: str | os.PathLike[str] | None = None) -> Path:
    """Write ``checkpoint``'s weights as a GGUF file of ``gguf_type`` with llama.cpp's own converter.

    q8_0/f16/f32 come from ``convert_hf_to_gguf.py`` alone; q4_0/q4_1/q4_k_m also need ``llama-quantize``
    (on the PATH), which quantizes the f16 file.
    """
    if gguf_type not in CONVERTED_TYPES + QUANTIZED_TYPES:
        raise OptionError(f"gguf_type {gguf_type!r} is not supported: use one of "
                          f"{', '.join(CONVERTED_TYPES + QUANTIZED_TYPES)}.")
    script = find_tool(CONVERTER, converter)
    if script is None:
        raise OptionError(
            f"no GGUF file given and llama.cpp's {CONVERTER} is not on the PATH, so {os.fspath(checkpoint)!r} cannot "
            "be converted. Pass a GGUF of the same weights (--gguf FILE / gguf=), or the converter (--converter "
            f"PATH / converter=): it is in llama.cpp's sources and in the llama-cpp-python sdist (vendor/llama.cpp).")
    quantize = find_tool(QUANTIZE) if gguf_type in QUANTIZED_TYPES else None
    if gguf_type in QUANTIZED_TYPES and quantize is None:
        raise OptionError(f"gguf_type {gguf_type!r} needs llama.cpp's {QUANTIZE} on the PATH (build it from "
                          "llama.cpp's sources), or use one the converter writes itself: {', '.join(CONVERTED_TYPES)}.")
    out = Path(out)
    first = out.with_suffix(".f16.gguf") if quantize else out
    _run([sys.executable, script, os.fspath(checkpoint), "--outfile", str(first),
          "--outtype", "f16" if quantize else gguf_type], f"{CONVERTER} {os.fspath(checkpoint)}")
    if quantize:
        _run([quantize, str(first), str(out), gguf_type.upper()], f"{QUANTIZE} {first.name}")
        first.unlink()
    return out


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ModelSourceError(f"{what} failed (exit status {result.returncode}):\n{tail}")


class LlamaCppRunner:
    """llama.cpp through llama-cpp-python on one GGUF file: greedy, a fixed count of new tokens (EOS ignored).

    One sequence at a time, as llama-cpp-python runs: a list of prompts runs one after the other. Its
    ``generate`` keeps the KV cache of the longest prefix the new prompt shares with the previous call's
    tokens, which is its prefix reuse in a chat.
    """

    engine = "llama.cpp"

    def __init__(self, gguf: GGUFInfo, threads: int, context: int) -> None:
        module = llama_cpp()
        try:
            self.llm = module.Llama(model_path=gguf.path, n_threads=threads, n_threads_batch=threads,
                                    n_ctx=context, n_batch=512, seed=0, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelSourceError(f"llama.cpp cannot load {gguf.path!r}: {exc}") from None
        self.weights = f"{gguf.file_type} (GGUF)"
        self.weight_bytes = gguf.tensor_bytes

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        tokens = self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True)
        return list(itertools.islice(tokens, new_tokens))  # stops before the last token is evaluated, as OpenVINO

    def generate_list(self, prompts: list[list[int]], new_tokens: int) -> None:
        for ids in prompts:
            self.generate(ids, new_tokens)

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()


def missing_extra_error() -> MissingExtraError | None:
    """The error ``llama_cpp()`` would raise, or None when llama-cpp-python imports (for early checks)."""
    try:
        llama_cpp()
    except MissingExtraError as exc:
        return exc
    return None
