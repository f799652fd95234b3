"""Tools over the model: bench, memory, evaluate, tune."""
