"""``ov_causal.batch`` moved to ``ov_causal.serving.ray_batch``; this path keeps code written for 0.1 working."""

from .serving.ray_batch import (  # noqa: F401
    OUTPUT_COLUMNS,
    Generator,
    generate_batch,
)
