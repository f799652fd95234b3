"""``ov_causal.pipelines`` moved to ``ov_causal.model.pipelines``; this path keeps code written for 0.1 working."""

from .model.pipelines import (  # noqa: F401
    pipeline,
)
