"""matplotlib for files only: every figure resnet_lab draws (curves, LR range test, galleries,
sweep plots) is written to disk, never shown, and matplotlib is imported on first use so that
config answers and --help never load it."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
