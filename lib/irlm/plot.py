"""The book's one plotting style: call :func:`use_style` once per chapter.

Every figure has a title, labelled axes and a legend where there is more than one
series; :func:`label` sets all three in one call so none is forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from irlm.metrics import CI

PALETTE = ["#1f5fa6", "#d9622b", "#3a9a5b", "#8e44ad", "#c0392b", "#7f8c8d", "#b8860b", "#17a2b8"]

STYLE = {
    "figure.figsize": (6.4, 3.8),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 2.0,
    "lines.markersize": 5,
    "svg.hashsalt": "irlm",
}


def use_style() -> None:
    """Apply the book's matplotlib style (inline PNG figures, as nbval expects)."""
    mpl.rcParams.update(STYLE)


def label(ax: plt.Axes, title: str, xlabel: str, ylabel: str, legend: bool | None = None) -> plt.Axes:
    """Title and axis labels in one call; a legend if asked, or if there are labelled series."""
    if not (title and xlabel and ylabel):
        raise ValueError("every figure needs a title, an x label and a y label")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, _ = ax.get_legend_handles_labels()
    if legend or (legend is None and len(handles) > 1):
        ax.legend()
    return ax


def line_with_ci(
    ax: plt.Axes,
    x: Sequence[float],
    cis: Sequence[CI],
    label: str | None = None,
    color: str | None = None,
    marker: str = "o",
    **kwargs,
) -> plt.Axes:
    """A line through the CI means with a shaded band from ``lo`` to ``hi``."""
    if len(x) != len(cis):
        raise ValueError(f"x and cis must have equal length, got {len(x)} and {len(cis)}")
    mean, lo, hi = (np.array([getattr(c, f) for c in cis]) for f in ("mean", "lo", "hi"))
    (line,) = ax.plot(x, mean, marker=marker, label=label, color=color, **kwargs)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    return ax
