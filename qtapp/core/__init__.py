"""The domain of QuantLens. Plain Python: nothing in this package may import Qt."""
