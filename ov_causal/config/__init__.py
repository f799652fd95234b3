"""Configuration: presets, ov_config validation, Hub and optimum keywords."""
