"""GenAI's engine as the serving core sets it up and drives it: the folder and numbers checked, the scheduler
configured, a known one-thread crash refused, the primer request that keeps ``generate()`` stepping."""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

from ..convert.cache import compiling, genai_properties
from ..convert.sources import CONFIG_FILE, DETOKENIZER_FILE, IR_FILE, TOKENIZER_FILE
from ..errors import APIError, ModelSourceError, OptionError


def engine_args(folder: Path, device: str, properties: dict[str, Any], kv_cache_gb: int | None,
                kv_blocks: int | None, max_running: int, max_queue: int, prefix_caching: bool) -> tuple[tuple, str]:
    """The ``ContinuousBatchingPipeline`` arguments for ``folder`` (checked first), and how its KV pool is sized."""
    import openvino_genai

    _check_folder(folder)
    _check_numbers(kv_cache_gb, kv_blocks, max_running, max_queue)
    if single_thread_crash(folder, properties):
        raise OptionError("INFERENCE_NUM_THREADS=1 crashes OpenVINO GenAI 2026.4's continuous batching (SIGFPE) on "
                          "this model (head size under 64, bf16 or f16 inference): use 2 or more threads, set "
                          "INFERENCE_PRECISION_HINT=f32, or leave INFERENCE_NUM_THREADS unset.")
    scheduler = openvino_genai.SchedulerConfig()
    scheduler.enable_prefix_caching = prefix_caching
    scheduler.max_num_seqs = max_running
    if kv_cache_gb is not None:
        scheduler.cache_size = kv_cache_gb
    if kv_blocks is not None:
        scheduler.num_kv_blocks = kv_blocks
    pool = f"{kv_cache_gb} GB" if kv_cache_gb else f"{kv_blocks}-block" if kv_blocks else "the"
    return (str(folder), scheduler, device, genai_properties(properties, device)), pool


def new_pipeline(args: tuple) -> Any:
    """The engine, compiled under the cache entry's compile lock (two replicas may start on one entry at once)."""
    import openvino_genai

    # OpenVINO writes a blob in place: another process must not read it half-written (none on CPU: genai_properties)
    with compiling(args[3], args[2]):
        return openvino_genai.ContinuousBatchingPipeline(*args)


STALL_TIMEOUT = 120.0  # seconds without a token before the engine counts as stuck (a step: 25 ms to ~20 s)
PRIMER_TOKENS = 4  # steps the primer keeps generate() going while our first requests go in
POLL = 0.005  # seconds between two reads of the running requests while the engine steps (a step: 25-150 ms)
REASONS = {"STOP": "stop", "LENGTH": "length", "TOOL_CALL": "stop"}


def primer(opened: threading.Event, cond: threading.Condition) -> tuple[Any, Any, Any]:
    """A short request to run generate() on, and a streamer that opens the engine at its first token.

    The primer lasts a few steps, time for our requests to go in (they keep generate() stepping from then on).
    Its streamer never answers STOP: GenAI 2026.4 then fails with "std::future_error: No associated state".
    """
    import openvino
    import openvino_genai

    class Gate(openvino_genai.StreamerBase):
        def write(self, token: Any) -> Any:
            opened.set()
            with cond:
                cond.notify()
            return openvino_genai.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = PRIMER_TOKENS
    return openvino.Tensor(int64([[0]])), config, Gate()


def int64(rows: list[list[int]]) -> Any:
    import numpy

    return numpy.asarray(rows, dtype=numpy.int64)


def trim_heap() -> None:
    """glibc keeps freed arenas; malloc_trim returns them to the system (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_folder(folder: Path) -> None:
    missing = [n for n in (IR_FILE, TOKENIZER_FILE, DETOKENIZER_FILE)
               if not (folder / n).is_file()]
    if missing:
        raise ModelSourceError(f"{folder} is not a GenAI-ready export folder: {', '.join(missing)} missing. "
                               "Export it with ov_causal (save_pretrained writes the OpenVINO tokenizers).")


def _check_numbers(kv_cache_gb: int | None, kv_blocks: int | None, max_running: int, max_queue: int) -> None:
    if kv_cache_gb is not None and kv_blocks is not None:
        raise OptionError(f"kv_cache_gb={kv_cache_gb!r} and kv_blocks={kv_blocks!r} both size the KV-cache pool: "
                          "pass one of them.")
    for name, value, low in (("kv_cache_gb", kv_cache_gb, 1), ("kv_blocks", kv_blocks, 1),
                             ("max_running", max_running, 1), ("max_queue", max_queue, 0)):
        if name.startswith("kv") and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise OptionError(f"{name}={value!r} is not valid: pass a whole number of at least {low}.")


def single_thread_crash(folder: Path, properties: dict[str, Any]) -> bool:
    """Whether these properties hit a crash of GenAI 2026.4's continuous batching with one inference thread.

    Checked on this machine (AMX/AVX512-BF16, where bf16 is the CPU default): one thread crashed with SIGFPE
    on a head size of 32 (bf16; f16 and f32 ran) and with SIGSEGV on a head size of 64 with f16 (bf16 and
    f32 ran). f32 ran everywhere.
    """
    if str(properties.get("INFERENCE_NUM_THREADS")) != "1":
        return False
    precision = str(properties.get("INFERENCE_PRECISION_HINT", "bf16")).lower()
    if precision in ("f32", "float32"):
        return False
    return precision in ("f16", "float16") or (_head_size(folder) or 0) < 64


def _config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _head_size(folder: Path) -> int | None:
    config = _config(folder)
    if isinstance(config.get("head_dim"), int):
        return int(config["head_dim"])
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    return hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads else None


def context_length(folder: Path) -> int | None:
    """The model's context window from its config.json, or None."""
    config = _config(folder)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def pool_refusal(pool: str, request: Any) -> APIError:
    """The error of a request GenAI dropped because it cannot fit in the KV-cache pool."""
    return APIError(400, f"The request needs more than {pool} KV-cache pool ({request.prompt_tokens} prompt "
                    f"tokens, max_tokens={request.config.max_new_tokens}, n={request.config.num_return_sequences}"
                    "). Send a shorter prompt or lower max_tokens/n, or start the server with a larger "
                    "--kv-cache-gb.", code="kv_cache_exceeded")


def engine_message(error: BaseException) -> str:
    """An engine exception's first line, without GenAI's "[time] /path/file.cc:83: " prefix."""
    line = next((text for text in str(error).splitlines() if text.strip()), type(error).__name__).strip()
    if line.startswith("[") and ": " in line:
        line = line.split(": ", 1)[1]
    return line.rstrip(".") + "."
