"""Deprecated no-op: the PySide6 6.12.0 reference leak it worked around is excluded by the pin.

pyproject.toml requires ``PySide6-Essentials != 6.12.0``; the regression test
``tests/ui/test_compare_page.py::test_pyside_keeps_references_to_none_and_true`` checks the
installed build. Kept only while ``qtapp/ui/live_plot.py`` (another engineer's file, in progress)
still calls :func:`apply`; delete this module once that call is gone.
"""

from __future__ import annotations


def apply() -> bool:
    """Does nothing (returns False: no workaround applied)."""
    return False
