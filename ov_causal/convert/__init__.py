"""Building a model folder: sources, export, compression, LoRA fusion, manifest, export cache."""
