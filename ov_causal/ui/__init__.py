"""Jupyter display and progress bars (leaves, imported lazily)."""
