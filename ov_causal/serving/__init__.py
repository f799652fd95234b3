"""Serving: the torch-free core on GenAI continuous batching, OpenAI API, Ray Serve, Ray Data, OVMS."""
