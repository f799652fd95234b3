"""How fast this CPU runs int8 and int4 weights: the probe behind the size rule of ``preset="auto"``."""

from __future__ import annotations

import statistics
import time
from functools import lru_cache

from ..config.options import core
from .export import quiet_libraries


@lru_cache(maxsize=1)
def int_speeds(size: int = 4096, layers: int = 6, calls: int = 30) -> dict[str, float]:
    """Seconds per batch-1 pass through ``layers`` size x size matmuls, int8 vs int4 weights, on this CPU.

    The weights (int8: 96 MiB at the defaults) exceed the CPU caches, as an LLM's do, so the probe
    measures the memory-bound decode regime.
    """
    import nncf
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, size], np.float32, name="x")
    node = x
    for _ in range(layers):
        weight = ops.constant((rng.standard_normal((size, size)) * 0.02).astype(np.float32))
        node = ops.matmul(node, weight, False, True)
    modes = {"int8": dict(mode=nncf.CompressWeightsMode.INT8_ASYM),
             "int4": dict(mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=128)}
    speeds = {}
    data = rng.standard_normal((1, size)).astype(np.float32)
    for name, options in modes.items():
        with quiet_libraries():
            compressed = nncf.compress_weights(ov.Model([node], [x]), **options)
        compiled = core().compile_model(compressed, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        request.infer({0: data})
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            request.infer({0: data})
            times.append(time.perf_counter() - start)
        speeds[name] = statistics.median(times)
    return speeds
