"""Named presets: weight compression (saved into the export) and runtime options (applied at compile).

Compression names follow the OpenVINO white paper (``int8``, ``int4_sym_g128``, ...); runtime names
(``latency``, ``throughput``, ``accuracy``, ``memory``) live in ``runtimes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import PresetError, suggest
from .runtimes import (  # noqa: F401 - ov_causal.presets has always offered the runtime presets too
    DEFAULT_RUNTIME,
    EXACT_RUNTIME,
    RUNTIME_GROUP_SIZES,
    RUNTIMES,
    Runtime,
    default_runtime,
    get_runtime,
    runtimes_table,
)

WeightFormat = Literal["fp32", "fp16", "int8", "int4"]
DATA_FREE_SENSITIVITY = "weight_quantization_error"
SENSITIVITY_METRICS = (
    DATA_FREE_SENSITIVITY,
    "hessian_input_activation",
    "mean_activation_variance",
    "max_activation_variance",
    "mean_activation_magnitude",
)
ONE_BILLION = 1_000_000_000
INT4_OVERRIDES = {"group_size", "ratio", "awq", "scale_estimation", "gptq", "sensitivity", "all_layers"}


def _check_group_size(group_size: int) -> None:
    ok = group_size == -1 or (group_size >= 16 and group_size & (group_size - 1) == 0)
    if not ok:
        raise PresetError(
            f"group_size={group_size!r} is not valid: use -1 (one group per channel) or a power of two "
            "of at least 16 (the white paper's presets use 64 and 128)."
        )


@dataclass(frozen=True)
class Compression:
    """How the weights are stored in the exported model.

    Args:
        weights: ``fp32``/``fp16`` (no quantization), ``int8`` (per-channel asymmetric) or ``int4``.
        sym: int4 only: symmetric (faster) instead of asymmetric (more accurate) quantization.
        group_size: int4 only: weights sharing one scale (64, 128, ...; -1 per channel).
        ratio: int4 only: share of layers in int4, the rest in int8 (0 < ratio <= 1).
        awq: int4 only: NNCF's AWQ, data-aware (needs calibration text).
        scale_estimation: int4 only: NNCF's scale estimation, data-aware.
        gptq: int4 only: NNCF's GPTQ, data-aware.
        sensitivity: int4 with ratio < 1: how NNCF ranks layers for int4, one of SENSITIVITY_METRICS
            (``weight_quantization_error`` is data-free; the others need calibration text).
        all_layers: int4 only: the embedding and the LM head in int4 too (NNCF's ``all_layers``; by default
            NNCF keeps them in int8). Faster decode, larger accuracy price.
    """

    weights: WeightFormat
    sym: bool = False
    group_size: int | None = None
    ratio: float = 1.0
    awq: bool = False
    scale_estimation: bool = False
    gptq: bool = False
    sensitivity: str | None = None
    all_layers: bool = False

    def __post_init__(self) -> None:
        if self.weights not in ("fp32", "fp16", "int8", "int4"):
            raise PresetError(f"weights={self.weights!r} is not valid: use 'fp32', 'fp16', 'int8' or 'int4'.")
        if not isinstance(self.ratio, (int, float)) or isinstance(self.ratio, bool) or not 0 < self.ratio <= 1:
            raise PresetError(f"ratio={self.ratio!r} is not valid: use a number in (0, 1], e.g. 0.8.")
        if self.sensitivity is not None and self.sensitivity not in SENSITIVITY_METRICS:
            raise PresetError(
                f"sensitivity={self.sensitivity!r} is not valid: use one of {', '.join(SENSITIVITY_METRICS)}."
            )
        if self.awq and self.gptq:
            raise PresetError("awq and gptq are alternatives: pick one (each combines with scale_estimation).")
        if self.weights != "int4":
            if (self.sym or self.group_size is not None or self.ratio != 1.0 or self.data_aware or self.sensitivity
                    or self.all_layers):
                raise PresetError(
                    f"sym, group_size, ratio, sensitivity, all_layers and the data-aware methods apply to int4 only, "
                    f"not to {self.weights!r}: pick an int4 preset (e.g. 'int4_asym_g128') to set them."
                )
        else:
            if self.group_size is None:
                object.__setattr__(self, "group_size", 128)
            if not isinstance(self.group_size, int) or isinstance(self.group_size, bool):
                raise PresetError(f"group_size={self.group_size!r} is not valid: use an int such as 64 or 128.")
            _check_group_size(self.group_size)

    @property
    def quantized(self) -> bool:
        return self.weights in ("int8", "int4")

    @property
    def data_aware(self) -> bool:
        """True when compressing needs calibration text."""
        return self.awq or self.scale_estimation or self.gptq or self.sensitivity not in (None, DATA_FREE_SENSITIVITY)

    def describe(self) -> str:
        if self.weights != "int4":
            return self.weights
        ratio = "" if self.ratio == 1.0 else f" ratio={self.ratio:g}"
        methods = [m for m in ("awq", "scale_estimation", "gptq", "all_layers") if getattr(self, m)]
        extra = f" +{'+'.join(methods)}" if methods else ""
        group = "per-channel" if self.group_size == -1 else f"g{self.group_size}"
        return f"int4 {'sym' if self.sym else 'asym'} {group}{ratio}{extra}"


@dataclass(frozen=True)
class Preset:
    """A named pair of weight compression and (optionally) runtime options."""

    name: str
    compression: Compression
    runtime: Runtime | None = None

    def _repr_html_(self) -> str:
        from ..ui.display import html_table

        return html_table(_PRESET_COLUMNS, [_preset_row(self)], caption=f"Preset {self.name!r}")


_PRESET_COLUMNS = ("preset", "weights", "sym", "group size", "ratio", "data-aware", "default runtime")


def _preset_row(p: Preset) -> tuple[Any, ...]:
    c = p.compression
    int4 = c.weights == "int4"
    methods = "+".join(m for m in ("awq", "scale_estimation", "gptq") if getattr(c, m)) or "-"
    if c.all_layers:
        methods += " (all layers)"
    return (p.name, c.weights, c.sym if int4 else "-", c.group_size if int4 else "-", c.ratio if int4 else "-",
            methods, p.runtime.name if p.runtime else default_runtime(c.weights).name)


def _int4(sym: bool, group_size: int) -> Preset:
    name = f"int4_{'sym' if sym else 'asym'}_g{group_size}"
    return Preset(name, Compression("int4", sym=sym, group_size=group_size))


# int4 with one scale per output channel (group_size=-1): the fastest int4 decode on CPU, and the ways to buy
# accuracy back (docs/presets.md has the measured price of each).
CHANNEL_PRESETS = (
    Preset("int4_sym_channel", Compression("int4", sym=True, group_size=-1)),
    Preset("int4_asym_channel", Compression("int4", group_size=-1)),
    Preset("int4_sym_channel_r80", Compression("int4", sym=True, group_size=-1, ratio=0.8)),
    Preset("int4_sym_channel_awq", Compression("int4", sym=True, group_size=-1, awq=True, scale_estimation=True)),
    Preset("int4_sym_channel_gptq", Compression("int4", sym=True, group_size=-1, gptq=True, scale_estimation=True)),
    Preset("int4_sym_channel_all", Compression("int4", sym=True, group_size=-1, all_layers=True)),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fp32", Compression("fp32")),
        Preset("fp16", Compression("fp16")),
        Preset("int8", Compression("int8")),
        _int4(True, 128),
        _int4(False, 128),
        _int4(True, 64),
        _int4(False, 64),
        Preset("int4_asym_g128_awq", Compression("int4", group_size=128, awq=True, scale_estimation=True)),
        Preset("int4_asym_g64_awq", Compression("int4", group_size=64, awq=True, scale_estimation=True)),
        Preset("int4_asym_g128_gptq", Compression("int4", group_size=128, gptq=True, scale_estimation=True)),
        Preset("int4_asym_g64_gptq", Compression("int4", group_size=64, gptq=True, scale_estimation=True)),
        *CHANNEL_PRESETS,
    )
}

def get_preset(name: str) -> Preset:
    """Look up a compression preset by name; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise PresetError(
            f"unknown preset {name!r}.{suggest(name, PRESETS)} Valid presets: {', '.join(PRESETS)}."
        )
    return PRESETS[name]


def resolve_compression(
    preset: str | Preset | Compression | None, **overrides: Any
) -> tuple[str | None, Compression | None]:
    """Turn the user's ``preset`` plus int4 overrides (group_size, ratio, awq, ...) into (name, Compression).

    (None, None) means 'the default for this model's size'.
    """
    unknown = set(overrides) - INT4_OVERRIDES
    if unknown:
        raise PresetError(f"unknown compression override(s) {sorted(unknown)}: use {sorted(INT4_OVERRIDES)}.")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if preset is None:
        if changes:
            raise PresetError(
                f"{', '.join(sorted(changes))}= need an int4 preset, e.g. preset='int4_asym_g64', ratio=0.8."
            )
        return None, None
    if isinstance(preset, str):
        named = get_preset(preset)
        name, compression = named.name, named.compression
    elif isinstance(preset, Preset):
        name, compression = preset.name, preset.compression
    elif isinstance(preset, Compression):
        name, compression = "custom", preset
    else:
        raise PresetError(
            f"preset={preset!r} is not valid: pass a preset name ({', '.join(PRESETS)}), a Preset or a Compression."
        )
    if not changes:
        return name, compression
    if compression.weights != "int4":
        raise PresetError(f"{', '.join(sorted(changes))}= apply to int4 presets, not to {name!r}.")
    return f"{name}+custom", dataclasses.replace(compression, **changes)


def default_compression(num_parameters: int) -> tuple[str, Compression]:
    """optimum-intel's default: int8 weights above one billion parameters, none below."""
    name = "int8" if num_parameters > ONE_BILLION else "fp32"
    return name, PRESETS[name].compression


def resolve_runtime(
    runtime: str | Runtime | None,
    preset: str | Preset | Compression | None = None,
    dq_group_size: int | None = None,
) -> Runtime | None:
    """The runtime preset in force: explicit ``runtime``, else the preset's own, else None (caller's default)."""
    if runtime is None and isinstance(preset, Preset):
        runtime = preset.runtime
    if isinstance(runtime, str):
        runtime = get_runtime(runtime)
    elif runtime is not None and not isinstance(runtime, Runtime):
        raise PresetError(
            f"runtime={runtime!r} is not valid: pass a runtime preset name ({', '.join(RUNTIMES)}) or a Runtime."
        )
    if dq_group_size is not None:  # a quantization setting: it starts from the quantized default
        runtime = (runtime or get_runtime(DEFAULT_RUNTIME)).with_group_size(dq_group_size)
    return runtime


def presets_table() -> Any:
    """The compression presets as a table (HTML in Jupyter, text with ``print``; ``.to_pandas()``)."""
    from ..ui.display import Table

    return Table(_PRESET_COLUMNS, tuple(_preset_row(p) for p in PRESETS.values()), "Compression presets")
