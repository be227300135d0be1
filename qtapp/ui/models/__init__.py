"""The Models page: GGUF files found on this computer."""
