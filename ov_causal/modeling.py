"""``ov_causal.modeling`` moved to ``ov_causal.model.modeling``; this path keeps code written for 0.1 working."""

from .model.modeling import (  # noqa: F401
    AutoModelForCausalLM,
    OVCausalLM,
    OVModelForCausalLM,
    load_model,
)
