"""Work around reference-count bugs of PySide6 6.12.0 on Python < 3.12.

In that release every call to a C++ method returning ``void`` hands back ``None`` without
taking a reference, and ``SignalInstance.emit()`` does the same with ``True``. On Python 3.11
``None`` and ``True`` are ordinary objects with a few thousand references, so after that many
calls (one pyqtgraph redraw makes hundreds) the interpreter aborts with "Fatal Python error:
none_dealloc" or "bool_dealloc". Python 3.12 made these objects immortal, which hides the bugs.
We do the same: give ``None``, ``True`` and ``False`` a reference count so large that no session
wears it down. Call :func:`apply` once, before the first window is built. Reproduction::

    n = sys.getrefcount(None); QLabel().setText("x")  # sys.getrefcount(None) is now n - 1
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)
_APPLIED = False


def leaks_singletons() -> bool:
    """Whether this PySide6 build drops references to None or True (measured, not guessed)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(8):
        probe.sig.emit()
        probe.setObjectName("probe")
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    if lost_none > 0:  # give back what the probe took
        _bump(None, lost_none)
    if lost_true > 0:
        _bump(True, lost_true)
    return lost_none > 0 or lost_true > 0


def _bump(obj: object, n: int) -> None:
    import ctypes

    ctypes.c_ssize_t.from_address(id(obj)).value += n  # ob_refcnt is PyObject's first field


def apply() -> bool:
    """Make None/True/False effectively immortal where needed; returns whether it acted."""
    global _APPLIED
    if _APPLIED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    _APPLIED = True
    if not leaks_singletons():
        return False
    for obj in (None, True, False):
        _bump(obj, 1 << 40)
    log.info("this PySide6 build leaks references to None/True: worked around (pyside_fixes)")
    return True
