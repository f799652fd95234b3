"""``ov_causal.evaluate`` moved to ``ov_causal.tools.evaluate``; this path keeps code written for 0.1 working."""

from .tools.evaluate import (  # noqa: F401
    DEFAULT_PRESETS,
    REFERENCE,
    EvalReport,
    EvalRow,
    decode_speed,
    default_text_path,
    evaluate,
    logger,
)
