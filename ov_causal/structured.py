"""``ov_causal.structured`` moved to ``ov_causal.model.structured``; this path keeps code written for 0.1 working."""

from .model.structured import (  # noqa: F401
    FORMATS,
    JSON_OBJECT_GRAMMAR,
    MAX_RECURSION_DEPTH,
    WHITESPACE,
    constraint,
    schema_regex,
    structured_output_config,
)
