"""What a loaded model says about itself: the fields of its summary (Jupyter's table) and of its repr."""

from __future__ import annotations

from typing import Any

from ..convert.gguf_routes import describe_route
from ..convert.ir import ir_mib, parameter_count


def cache_origin(hit: bool | None) -> str:
    if hit is None:
        return "not cached (export folder, or cache=False)"
    return "yes: loaded from the export cache" if hit else "no: exported now, and stored in the export cache"


def fallback_text(fallback: dict[str, str], summary: str, shown: int = 3) -> str:
    """'none', or the summary and the first layers: '2 layers: int4 g64 (2): model.layers.0.mlp.up_proj, ...'."""
    if not fallback:
        return "none: every int4 layer uses the preset's group size"
    names = list(fallback)
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"{summary}: {', '.join(f'{n} ({fallback[n]})' for n in names[:shown])}{more}"


def adapter_fields(registry: Any) -> list[tuple[str, Any]]:
    """The run-time adapters (``load_adapter``): which are loaded, which are active with their weights, the mode."""
    if not registry.loaded:
        return []
    loaded = ", ".join(f"{name} (r={max(a.ranks.values())}, {a.nbytes / 2**20:.2f} MiB)"
                       for name, a in registry.loaded.items())
    active = ", ".join(f"{name} x{weight:g}" for name, weight in registry.active.items()) or "none"
    if not registry.enabled:
        active = f"none: disabled (set: {active})"
    return [("run-time adapters", f"{loaded}; mode {registry.mode}"), ("active adapters", active)]


def model_summary(model: Any) -> list[tuple[str, Any]]:
    """(field, value) pairs describing an ov_causal model: what it is, how it was made, how it runs."""
    m = model.ov_manifest
    c = m.compression
    config = model.config
    arch = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    params = parameter_count(model.model)
    weights = c.describe() if c.weights != "int4" else f"int4 {'sym' if c.sym else 'asym'}"
    fields: list[tuple[str, Any]] = [
        ("architecture", f"{arch} ({config.model_type})"),
        ("parameters", f"{params / 1e6:.1f}M" if params >= 1e5 else f"{params:,}"),
        ("source", m.source),
        *([("GGUF", describe_route(m.gguf, m.preset))] if m.gguf else []),
        ("preset", m.preset),
        ("weights", weights),
        ("group size", c.group_size if c.weights == "int4" else "-"),
        ("int4 ratio", c.ratio if c.weights == "int4" else "-"),
    ]
    if c.weights == "int4":
        fields.append(("group-size fallback", fallback_text(m.fallback, m.fallback_summary())))
    if m.adapters:
        fields.append(("LoRA adapters", ", ".join(f"{a['path']} x{a['weight']:g}" for a in m.adapters)))
    fields += adapter_fields(model.adapter_registry)
    options = ", ".join(f"{k}={v}" for k, v in model.ov_config.items() if k != "CACHE_DIR")
    last = f", last call: {model.last_engine}" if model.last_engine else ""
    fields += [
        ("runtime", f"{model.ov_runtime.name}: {options}"),
        ("device", model.device_name),
        ("engine", f"{model.backend}{last}"),
        ("stateful", model.stateful),
        ("IR size", f"{ir_mib(model.model_save_dir):.1f} MiB"),
        ("from export cache", cache_origin(model.ov_cache_hit)),
    ]
    return fields


def describe(model: Any) -> str:
    """The model's ``repr``: its source, weights, runtime and device on one line."""
    m = model.ov_manifest
    fallback = m.fallback_summary()
    return (
        f"{type(model).__name__}(source={m.source!r}, "
        + (f"gguf={describe_route(m.gguf, m.preset)!r}, " if m.gguf else "")
        + f"model_type={model.config.model_type!r}, "
        f"preset={m.preset!r}, weights={m.compression.describe()!r}, "
        + (f"group_size_fallback={fallback!r}, " if fallback else "")
        + f"runtime={model.ov_runtime.name!r}, device={model.device_name!r}, stateful={model.stateful})"
    )
