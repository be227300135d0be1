"""The Quantize page: type picker, options, the job list and the recipe editor."""
