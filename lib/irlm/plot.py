"""The book's one plotting style: call :func:`use_style` once per chapter.

Every figure has a title, labelled axes and a legend where there is more than one
series; :func:`label` sets all three in one call so none is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def draw_tree(
    ax: plt.Axes,
    edges: Sequence[tuple[object, object]],
    label: Callable[[object], str],
    color: Callable[[object], str],
    width: Callable[[object], float] = lambda node: 1.0,
) -> plt.Axes:
    """Draw a tree given as ``(parent, child)`` edges in breadth-first order (the first
    parent is the root): depth downwards, leaves spread evenly, each parent above the middle
    of its children. ``label``, ``color`` and ``width`` (of the edge into a node) are
    functions of a node."""
    if not edges:
        raise ValueError("edges is empty: nothing to draw")
    children: dict[int, list] = {}
    for parent, child in edges:
        children.setdefault(id(parent), []).append(child)
    root, depth, x_of = edges[0][0], {}, {}
    leaves = iter(range(len(edges) + 1))

    def place(node, d: int) -> float:
        depth[id(node)] = d
        kids = children.get(id(node), [])
        x_of[id(node)] = float(np.mean([place(k, d + 1) for k in kids])) if kids else float(next(leaves))
        return x_of[id(node)]

    place(root, 0)
    for parent, child in edges:
        ax.plot(
            [x_of[id(parent)], x_of[id(child)]],
            [-depth[id(parent)], -depth[id(child)]],
            color="#999999",
            linewidth=width(child),
            zorder=1,
        )
    for node in [root] + [c for _, c in edges]:
        ax.scatter(
            x_of[id(node)], -depth[id(node)], s=60, color=color(node), zorder=2, edgecolors="black", linewidths=0.5
        )
        ax.annotate(
            label(node),
            (x_of[id(node)], -depth[id(node)]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            rotation=60,
        )
    ax.set_yticks([-d for d in range(max(depth.values()) + 1)], [str(d) for d in range(max(depth.values()) + 1)])
    ax.set_xticks([])
    return ax
