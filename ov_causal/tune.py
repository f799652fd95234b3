"""``ov_causal.tune`` moved to ``ov_causal.tools.tune``; this path keeps code written for 0.1 working."""

from .tools.tune import (  # noqa: F401
    CANDIDATES,
    DATA_AWARE_CANDIDATES,
    TUNED_FILE,
    TuneResult,
    auto_preset,
    choose,
    int_speeds,
    recall_all,
    remember,
    tune,
)
