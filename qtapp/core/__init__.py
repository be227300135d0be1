"""The domain of QuantLens. Plain Python: nothing in this package may import Qt.

Subpackages by domain (each ``__init__`` says what it owns): ``gguf``, ``hardware``, ``fit``,
``quantize``, ``evaluate``, ``results``, ``jobs`` (with ``jobs/engine``, the child's side), ``app``.
"""
