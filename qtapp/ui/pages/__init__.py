"""The window's pages. Each module has ``Page(ctx)``, a QWidget with ``key`` and ``title``."""

from __future__ import annotations

#: (key, module under qtapp.ui.pages) in the order of the navigation list
PAGES: list[tuple[str, str]] = [
    ("welcome", "welcome_page"),
    ("hardware", "hardware_page"),
    ("models", "models_page"),
    ("fit", "fit_page"),
    ("quantize", "quantize_page"),
    ("evaluate", "evaluate_page"),
    ("compare", "compare_page"),
    ("settings", "settings_page"),
]
