"""``ov_causal.serve`` moved to ``ov_causal.serving.ray_serve``; this path keeps code written for 0.1 working."""

from .serving.ray_serve import (  # noqa: F401
    APP_NAME,
    check_port,
    default_name,
    serve,
    shutdown,
    wait,
)
