"""The Welcome page and the demo tour."""
