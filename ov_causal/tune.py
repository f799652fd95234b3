"""``ov_causal.tune`` moved to ``ov_causal.tools.tune``; this path keeps code written for 0.1 working."""

from .build.speed_probe import int_speeds  # noqa: F401
from .config.auto import TUNED_FILE, auto_preset, recall_all  # noqa: F401
from .tools.tune import (  # noqa: F401
    CANDIDATES,
    DATA_AWARE_CANDIDATES,
    TuneResult,
    choose,
    remember,
    tune,
)
