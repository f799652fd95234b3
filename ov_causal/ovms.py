"""``ov_causal.ovms`` moved to ``ov_causal.serving.ovms``; this path keeps code written for 0.1 working."""

from .serving.ovms import (  # noqa: F401
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    DEFAULT_CHAT_TEMPLATE,
    GRAPH_FILE,
    OVMSExport,
    check_output,
    export_ir,
    export_ovms,
    graph_text,
)
