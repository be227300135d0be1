"""The Find a model page: plan a Hugging Face repo's GGUF files before downloading one."""
