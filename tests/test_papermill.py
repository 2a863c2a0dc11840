"""Chapters through papermill with non-default parameters: they must take effect."""

import json
import shutil
from pathlib import Path

import papermill as pm

from irlm import zoo

ROOT = Path(__file__).resolve().parents[1]


def outputs_text(nb: dict) -> str:
    chunks = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            chunks.append("".join(out.get("text", "")))
            chunks.append("".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(chunks)


def test_chapter1_with_other_parameters(tmp_path):
    out = tmp_path / "ch1.ipynb"
    params = dict(seed=1, n_queries=60, n_samples=8, temperatures=[0.5, 1.0])
    pm.execute_notebook(
        str(ROOT / "notebooks/01_universal_sampler.ipynb"),
        str(out),
        parameters=params,
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
    )
    nb = json.loads(out.read_text())
    text = outputs_text(nb)
    assert "60 held-out test queries" in text
    assert f"sampled {2 * 60 * 8:,} responses" in text
    assert "'pass@8 (T=1.0)'" in text
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "n_queries = 60" in "".join(injected[0]["source"])


def test_chapter4_with_other_n_values(tmp_path):
    out = tmp_path / "ch4.ipynb"
    params = dict(n_values=[1, 4, 16], n_test=60, n_train=200, orm_steps=150, rs_name="papermill-test")
    pm.execute_notebook(
        str(ROOT / "notebooks/04_rejection_sampling.ipynb"),
        str(out),
        parameters=params,
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
    )
    text = outputs_text(json.loads(out.read_text()))
    assert "best-of-N for N in [1, 4, 16] on 60 held-out test queries" in text
    assert "sampled 960 responses" in text and "N=16" in text and "N=64" not in text
    saved = zoo.data_path("papermill-test-tiny-arith")
    assert saved.exists()
    shutil.rmtree(saved)
