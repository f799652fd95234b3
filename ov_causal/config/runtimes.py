"""Runtime presets: named OpenVINO compile options (``latency``, ``throughput``, ``accuracy``, ``memory``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import PresetError, suggest

RUNTIME_GROUP_SIZES = (0, 16, 32, 64, 128, 256)
RUNTIME_COLUMNS = ("runtime", "hint", "dynamic quantization group", "KV cache", "inference precision", "streams")


@dataclass(frozen=True)
class Runtime:
    """OpenVINO compile options for a use case (the ``ov_config`` recipes of OpenVINO's LLM guides).

    Args:
        hint: ``PERFORMANCE_HINT``: ``LATENCY`` or ``THROUGHPUT``.
        dynamic_quantization_group_size: activations quantized per group of this size for
            int8/int4 weights; 0 turns dynamic quantization off.
        kv_cache_precision: ``u8``, ``f16``, ``bf16`` or ``f32`` (None: the device default).
        inference_precision: ``f32``, ``f16`` or ``bf16`` (None: the device default).
        num_streams: parallel inference streams (None: chosen by the hint).
    """

    name: str
    hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    dynamic_quantization_group_size: int = 32
    kv_cache_precision: str | None = "u8"
    inference_precision: str | None = None
    num_streams: int | None = None

    def __post_init__(self) -> None:
        if self.hint not in ("LATENCY", "THROUGHPUT"):
            raise PresetError(f"hint={self.hint!r} is not valid: use 'LATENCY' or 'THROUGHPUT'.")
        if self.dynamic_quantization_group_size not in RUNTIME_GROUP_SIZES:
            raise PresetError(
                f"dynamic quantization group size {self.dynamic_quantization_group_size!r} is not valid: "
                f"use one of {RUNTIME_GROUP_SIZES} (32, 64 and 128 are the recommended ones; 0 turns it off)."
            )
        if self.kv_cache_precision not in (None, "u8", "f16", "bf16", "f32"):
            raise PresetError(
                f"kv_cache_precision={self.kv_cache_precision!r} is not valid: use 'u8', 'f16', 'bf16' or 'f32'."
            )
        if self.inference_precision not in (None, "f32", "f16", "bf16"):
            raise PresetError(
                f"inference_precision={self.inference_precision!r} is not valid: use 'f32', 'f16' or 'bf16'."
            )
        if self.num_streams is not None and (not isinstance(self.num_streams, int) or self.num_streams < 1):
            raise PresetError(f"num_streams={self.num_streams!r} is not valid: use a positive int or None.")

    def _repr_html_(self) -> str:
        from ..ui.display import html_table

        return html_table(RUNTIME_COLUMNS, [runtime_row(self)], caption=f"Runtime {self.name!r}")

    def with_group_size(self, group_size: int) -> Runtime:
        """A copy with another dynamic quantization group size (32, 64, 128, or 0 for off)."""
        return dataclasses.replace(self, dynamic_quantization_group_size=group_size)

    def ov_config(self) -> dict[str, str]:
        """The ``ov_config`` dict this runtime preset stands for."""
        config = {
            "PERFORMANCE_HINT": self.hint,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": str(self.dynamic_quantization_group_size),
        }
        if self.kv_cache_precision is not None:
            config["KV_CACHE_PRECISION"] = self.kv_cache_precision
        if self.inference_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.num_streams is not None:
            config["NUM_STREAMS"] = str(self.num_streams)
        return config


def runtime_row(r: Runtime) -> tuple[Any, ...]:
    return (r.name, r.hint, r.dynamic_quantization_group_size or "off", r.kv_cache_precision or "device default",
            r.inference_precision or "device default", r.num_streams or "by hint")


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("latency"),
        Runtime("throughput", hint="THROUGHPUT"),
        Runtime("accuracy", dynamic_quantization_group_size=0, kv_cache_precision="f32", inference_precision="f32"),
        Runtime("memory", kv_cache_precision="u8", num_streams=1),
    )
}

DEFAULT_RUNTIME = "latency"
EXACT_RUNTIME = "accuracy"


def default_runtime(weights: str, ov_config: dict[str, str] | None = None) -> Runtime:
    """The runtime used when none is named: ``latency`` for int8/int4 weights; ``accuracy`` (no dynamic
    quantization, f32 KV cache and math) for fp32/fp16 weights or when ``ov_config`` asks for
    ``INFERENCE_PRECISION_HINT=f32``, so that an exact request never gets a quantized KV cache from a default."""
    exact = weights in ("fp32", "fp16") or str((ov_config or {}).get("INFERENCE_PRECISION_HINT", "")).lower() == "f32"
    return get_runtime(EXACT_RUNTIME if exact else DEFAULT_RUNTIME)


def get_runtime(name: str) -> Runtime:
    """Look up a runtime preset by name; an unknown name lists the valid ones."""
    if name not in RUNTIMES:
        raise PresetError(
            f"unknown runtime preset {name!r}.{suggest(name, RUNTIMES)} Valid runtime presets: {', '.join(RUNTIMES)}."
        )
    return RUNTIMES[name]


def runtimes_table() -> Any:
    """The runtime presets and the OpenVINO options they set, as a table."""
    from ..ui.display import Table

    return Table(RUNTIME_COLUMNS, tuple(runtime_row(r) for r in RUNTIMES.values()), "Runtime presets")
