"""QuantLens: which quantization of a model fits your GPUs, and what it costs."""

__version__ = "0.1.0"
