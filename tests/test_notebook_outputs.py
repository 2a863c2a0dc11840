"""The committed chapters are what readers see on GitHub, in Colab and in the book: no
progress bars, warnings, error output or machine paths in them."""

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(?<![\w.$])(/root/|/home/|/tmp/|/Users/|/work/|[A-Z]:\\\\)")
WARNING = re.compile(r"\b\w*Warning\b|\bwarn(ings?)?\.warn\b|\bDEPRECATED\b", re.IGNORECASE)
PROGRESS_BAR = re.compile(r"\d+%\|")


def output_texts(path: Path) -> list[tuple[int, str, str]]:
    """(cell index, output kind, text) of every output of a notebook."""
    nb = json.loads(path.read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            kind = out.get("name", out["output_type"])
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            found.append((i, kind, text))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    problems = []
    for i, kind, text in output_texts(path):
        if kind in ("stderr", "error"):
            problems.append(f"cell {i}: {kind} output {text[:80]!r}")
        for name, pattern in [("machine path", MACHINE_PATH), ("warning", WARNING), ("progress bar", PROGRESS_BAR)]:
            match = pattern.search(text)
            if match:
                problems.append(f"cell {i}: {name} {text[max(0, match.start() - 40) : match.end() + 40]!r}")
    assert not problems, "\n".join(problems)


def test_the_patterns_catch_what_they_should():
    assert MACHINE_PATH.search("saved to /root/.cache/irlm/x")
    assert not MACHINE_PATH.search("saved to $IRLM_CACHE/data/x")
    assert WARNING.search("FutureWarning: `x` is deprecated")
    assert PROGRESS_BAR.search(" 45%|████▌     | 9/20")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_a_caption_and_its_alt_text(path):
    from tests.figure_alt import expected_alts

    nb = json.loads(path.read_text())
    for i, alt in expected_alts(nb).items():
        assert alt, f"cell {i}: a figure without an italic caption after it"
        got = nb["cells"][i]["metadata"].get("mystnb", {}).get("image", {}).get("alt")
        assert got == alt, f"cell {i}: alt text {got!r}, the caption gives {alt!r} (run python tests/figure_alt.py)"


def test_alt_text_is_the_captions_first_sentence_in_plain_text():
    from tests.figure_alt import first_sentence, plain

    caption = "*Left: the $d = \\sqrt{\\mathrm{KL}}$ of `best_of_n` {cite}`gao2022scaling`. More here.*"
    assert first_sentence(plain(caption)) == "Left: the d = sqrt KL of best_of_n."


def shown_sources(path: Path) -> list[tuple[int, str, list[str], str]]:
    """(cell index, module, attribute path, printed text) of every
    ``print(inspect.getsource(name))`` in a chapter, the module resolved through the chapter's
    own ``from irlm import ...`` lines."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code")
    modules = {}  # the chapter's name for each irlm module it imports
    for names in re.findall(r"^from irlm import (.+)$", code, re.MULTILINE):
        for item in names.split(","):
            module, _, alias = item.strip().partition(" as ")
            modules[alias or module] = f"irlm.{module}"
    shown = []
    for i, cell in enumerate(nb["cells"]):
        for name in re.findall(r"print\(inspect\.getsource\(([\w.]+)\)\)", "".join(cell["source"])):
            head, *attributes = name.split(".")
            text = "".join("".join(out.get("text", "")) for out in cell.get("outputs", []))
            shown.append((i, modules[head], attributes, text))
    return shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_printed_library_source_is_the_library_source_today(path):
    """A chapter that shows a library function prints its source; the committed output must be
    that source as the library has it now, not a copy from an older run."""
    stale = []
    for i, module, attributes, text in shown_sources(path):
        obj = importlib.import_module(module)
        for attribute in attributes:
            obj = getattr(obj, attribute)
        if inspect.getsource(obj) not in text:
            stale.append(f"cell {i}: {module}.{'.'.join(attributes)}")
    assert not stale, f"{path.name}: printed source differs from the library's: {stale}"
