"""Errors that carry a message for the user and a hint saying what to do."""

from __future__ import annotations


class QuantLensError(Exception):
    """An expected failure: bad input, a full disk, a missing model. Shown to the user as is."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()
