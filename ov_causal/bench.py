"""``ov_causal.bench`` moved to ``ov_causal.tools.bench``; this path keeps code written for 0.1 working."""

from .tools.bench import (  # noqa: F401
    ENGINES,
    BenchReport,
    BenchRow,
    Measure,
    bench,
    build_random_checkpoint,
    memory_bandwidth_gb_s,
)
