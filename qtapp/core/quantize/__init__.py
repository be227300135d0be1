"""The parent side of quantization: job specs, checks before writing, clean-up, the stored run,
importance matrices."""
