"""``ov_causal.generation`` moved to ``ov_causal.model.generation``; this path keeps code written for 0.1 working."""

from .model.generation import (  # noqa: F401
    DEMO_MODEL,
    DEMO_PROMPT,
    Generation,
    generate,
    stream,
)
