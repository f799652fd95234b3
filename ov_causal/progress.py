"""``ov_causal.progress`` moved to ``ov_causal.ui.progress``; this path keeps code written for 0.1 working."""

from .ui.progress import (  # noqa: F401
    PROGRESS_ENV,
    progress_enabled,
    set_progress,
    stage,
)
