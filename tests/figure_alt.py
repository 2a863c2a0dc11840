"""Alt text for the book's figures, from their captions: every cell that draws a figure is
followed by an italic caption (a markdown cell starting with ``*``), and its first sentence,
stripped of markup, is the figure's alt text (cell metadata ``mystnb.image.alt``, which
Jupyter Book writes into the page's ``<img alt=...>``).

``python tests/figure_alt.py`` writes the alt text into every chapter; a test checks it is there.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def plain(markdown: str) -> str:
    """Caption text without markup: no emphasis, code ticks, math dollars or citation roles."""
    text = re.sub(r"\{cite[a-z:]*\}`[^`]*`", "", markdown)
    text = re.sub(r"\\(?:mathrm|text|operatorname)\{([^}]*)\}", r"\1", text)  # \mathrm{KL} -> KL
    text = re.sub(r"\\[,;!]", "", text).replace("\\|", "||")  # thin spaces; \| -> ||
    text = re.sub(r"\\([a-zA-Z]+)", r"\1 ", text)  # \sqrt -> sqrt, \pi -> pi
    text = re.sub(r"[*`${}\\]", "", text)
    return re.sub(r"\s+([.,;:)_^])", r"\1", re.sub(r"\s+", " ", text)).strip()


def first_sentence(text: str) -> str:
    match = re.search(r"^(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def draws_figure(cell: dict) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def expected_alts(nb: dict) -> dict[int, str | None]:
    """For each cell with an image output, the alt text its caption gives (None: no caption)."""
    cells, alts = nb["cells"], {}
    for i, cell in enumerate(cells):
        if not draws_figure(cell):
            continue
        caption = None  # the first italic markdown cell before the next figure
        for later in cells[i + 1 :]:
            if draws_figure(later):
                break
            text = "".join(later["source"]).lstrip()
            if later["cell_type"] == "markdown" and text.startswith("*"):
                caption = text.split("\n\n")[0]
                break
        alts[i] = first_sentence(plain(caption)) if caption else None
    return alts


def write(path: Path) -> None:
    nb = json.loads(path.read_text())
    for i, alt in expected_alts(nb).items():
        if alt is None:
            raise SystemExit(f"{path.name}, cell {i}: a figure without an italic caption after it")
        nb["cells"][i]["metadata"].setdefault("mystnb", {}).setdefault("image", {})["alt"] = alt
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    for path in [Path(p) for p in sys.argv[1:]] or NOTEBOOKS:
        write(path)
