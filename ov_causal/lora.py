"""``ov_causal.lora`` moved to ``ov_causal.build.lora``; this path keeps code written for 0.1 working."""

from .build.lora import (  # noqa: F401
    PICKLE_KEYWORD,
    PICKLE_WEIGHTS,
    SAFE_WEIGHTS,
    Adapter,
    LoraSpec,
    adapter_tensors,
    check_adapter,
    check_base,
    check_finite,
    check_targets,
    fuse,
    fuse_into,
    fuse_lora,
    fused_checkpoint,
    parse_adapters,
)
