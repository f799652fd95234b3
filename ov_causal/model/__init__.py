"""The model: OVModelForCausalLM / AutoModelForCausalLM, the two engines, pipeline(), generation."""
