"""Validation of ``ov_config`` keys/values and device names, before anything is compiled."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from ..errors import DeviceError, OptionError, suggest


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value)
        if text.upper() in allowed:
            return text.upper()
        if text.lower() in allowed:
            return text.lower()
        raise ValueError(f"use one of {', '.join(allowed)}")

    return check


def _non_negative_int(value: Any) -> str:
    if isinstance(value, bool) or str(value).strip().lstrip("+").isdigit() is False:
        raise ValueError("use a non-negative integer")
    return str(int(value))


def _streams(value: Any) -> str:
    if str(value).upper() in ("AUTO", "NUMA"):
        return str(value).upper()
    text = _non_negative_int(value)
    if int(text) < 1:
        raise ValueError("use a positive integer, 'AUTO' or 'NUMA'")
    return text


def _boolean(value: Any) -> str:
    text = str(value).upper()
    if text in ("YES", "TRUE", "1"):
        return "YES"
    if text in ("NO", "FALSE", "0"):
        return "NO"
    raise ValueError("use True/False or 'YES'/'NO'")


def _text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError("use a string")
    return str(value)


_CACHE_PRECISIONS = ("u8", "u4", "i8", "f16", "bf16", "f32")

# Keys the runtime presets and OpenVINO's LLM guides use, with their allowed values. Other keys are accepted
# when the target device reports them in SUPPORTED_PROPERTIES (values then checked by OpenVINO).
KNOWN_KEYS: dict[str, Callable[[Any], str]] = {
    "PERFORMANCE_HINT": _choice("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
    "PERFORMANCE_HINT_NUM_REQUESTS": _non_negative_int,
    "EXECUTION_MODE_HINT": _choice("PERFORMANCE", "ACCURACY"),
    "INFERENCE_PRECISION_HINT": _choice("f32", "f16", "bf16"),
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": _non_negative_int,
    "KV_CACHE_PRECISION": _choice(*_CACHE_PRECISIONS),
    "KEY_CACHE_PRECISION": _choice(*_CACHE_PRECISIONS),
    "VALUE_CACHE_PRECISION": _choice(*_CACHE_PRECISIONS),
    "KEY_CACHE_GROUP_SIZE": _non_negative_int,
    "VALUE_CACHE_GROUP_SIZE": _non_negative_int,
    "NUM_STREAMS": _streams,
    "INFERENCE_NUM_THREADS": _non_negative_int,
    "ENABLE_CPU_PINNING": _boolean,
    "ENABLE_HYPER_THREADING": _boolean,
    "ENABLE_CPU_RESERVATION": _boolean,
    "PERF_COUNT": _boolean,
    "SCHEDULING_CORE_TYPE": _choice("ANY_CORE", "PCORE_ONLY", "ECORE_ONLY"),
    "CACHE_DIR": _text,
}


@lru_cache(maxsize=1)
def core() -> Any:
    """The process-wide ``openvino.Core`` (created on first use, not at import)."""
    import openvino

    return openvino.Core()


def available_devices() -> list[str]:
    """Devices OpenVINO sees on this machine, e.g. ``['CPU']`` or ``['CPU', 'GPU.0', 'GPU.1']``."""
    return list(core().available_devices)


def _device_exists(name: str, devices: list[str]) -> bool:
    return name in devices or any(d.split(".")[0] == name for d in devices)


def check_device(device: str) -> str:
    """Return the upper-cased device name, or raise DeviceError naming the available devices.

    Virtual devices (AUTO, MULTI, HETERO) are accepted with their listed devices checked.
    """
    if not isinstance(device, str) or not device.strip():
        raise DeviceError(f"device={device!r} is not valid: pass an OpenVINO device name such as 'CPU' or 'GPU'.")
    device = device.strip().upper()
    if device == "CPU":  # always there: asking OpenVINO would probe every plugin
        return device
    devices = available_devices()
    virtual, _, targets = device.partition(":")
    names = [t for t in targets.split(",") if t] if virtual in ("AUTO", "MULTI", "HETERO") else [device]
    missing = [n for n in names if not _device_exists(n, devices)]
    if missing:
        raise DeviceError(
            f"device {missing[0]!r} is not available on this machine. Available devices: {', '.join(devices)}. "
            "Pick one of them (device='CPU' always exists)."
        )
    return device


def supported_properties(device: str) -> set[str]:
    """Property names the device accepts at compile time (empty when it cannot be asked)."""
    base = device.split(":")[0].split(".")[0]
    if base in ("AUTO", "MULTI", "HETERO"):
        return set()
    try:
        return set(core().get_property(base, "SUPPORTED_PROPERTIES"))
    except RuntimeError:
        return set()


def validate_ov_config(config: Mapping[str, Any], device: str = "CPU") -> dict[str, str]:
    """Check every key and value of an ``ov_config``; return it with values normalised to strings."""
    if not isinstance(config, Mapping):
        raise OptionError(f"ov_config must be a dict of OpenVINO properties, not {type(config).__name__}.")
    checked: dict[str, str] = {}
    device_keys: set[str] | None = None
    for key, value in config.items():
        if not isinstance(key, str):
            raise OptionError(f"ov_config key {key!r} is not a string: use property names such as 'PERFORMANCE_HINT'.")
        if key in KNOWN_KEYS:
            try:
                checked[key] = KNOWN_KEYS[key](value)
            except ValueError as exc:
                raise OptionError(f"ov_config[{key!r}] = {value!r} is not valid: {exc}.") from None
            continue
        if device_keys is None:
            device_keys = supported_properties(device)
        if key not in device_keys:
            valid = sorted(set(KNOWN_KEYS) | device_keys)
            raise OptionError(
                f"ov_config key {key!r} is not an OpenVINO property of {device}.{suggest(key, valid)} "
                f"Known keys: {', '.join(sorted(KNOWN_KEYS))}."
            )
        checked[key] = _text(value) if not isinstance(value, bool) else _boolean(value)
    return checked
