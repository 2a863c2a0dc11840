import matplotlib
import matplotlib.pyplot as plt
import pytest

from irlm import plot
from irlm.metrics import CI


def test_style_and_labels():
    plot.use_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    fig, ax = plt.subplots()
    plot.line_with_ci(ax, [1, 2], [CI(0.2, 0.1, 0.3), CI(0.5, 0.4, 0.6)], label="a")
    plot.line_with_ci(ax, [1, 2], [CI(0.3, 0.2, 0.4), CI(0.6, 0.5, 0.7)], label="b")
    plot.label(ax, "title", "x", "y")
    assert ax.get_title() == "title" and ax.get_xlabel() == "x" and ax.get_legend() is not None
    assert len(ax.collections) == 2  # one CI band per line
    plt.close(fig)


def test_label_requires_all_three():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="title"):
        plot.label(ax, "", "x", "y")
    with pytest.raises(ValueError, match="equal length"):
        plot.line_with_ci(ax, [1, 2, 3], [CI(0, 0, 0)])
    plt.close(fig)


def test_draw_tree_places_children_below_their_parent():
    import matplotlib.pyplot as plt

    from irlm.search import Node

    root = Node("r")
    a, b = Node("a", parent=root), Node("b", parent=root)
    c = Node("c", parent=a)
    fig, ax = plt.subplots()
    plot.draw_tree(ax, [(root, a), (root, b), (a, c)], label=lambda n: n.state, color=lambda n: "green")
    points = {t.get_text(): t.xy for t in ax.texts}
    assert points["r"][1] == 0 and points["a"][1] == -1 and points["c"][1] == -2
    assert points["a"][0] == points["c"][0] and min(points["a"][0], points["b"][0]) < points["r"][0]
    with pytest.raises(ValueError, match="empty"):
        plot.draw_tree(ax, [], label=str, color=str)
    plt.close(fig)
