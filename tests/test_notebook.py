"""The notebook a student runs (notebooks/hw1.ipynb), executed from its parameters cell to the hand-in folder.

Here on synthetic data on the CPU, its recipes and budgets replaced by tiny ones through its parameters cell, in a
Jupyter kernel driven by nbclient, as Colab runs it cell by cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, TINY_SEG_RECIPE, need_module

from dlcv.data.synth import synth_p1, synth_p2

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "hw1.ipynb"
TINY_MODEL_B = """\
name: tiny_b
data: {batch_size: 16, eval_batch_size: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
model: {name: timm, args: {arch: tf_efficientnet_lite0, weights: efficientnet-lite0}}
optim: {name: adamw, lr: 1.0e-3}
train: {epochs: 1, threads: 1, precision: 32-true}
"""


def parameters(tmp_path: Path, data: Path) -> str:
    recipes = {}
    for name, text in (("a", TINY_RECIPE), ("b", TINY_MODEL_B), ("seg", TINY_SEG_RECIPE.replace(
            'progress: {images: ["0001", "0003"]}', "progress: {images: ['0001']}"))):
        recipes[name] = tmp_path / f"{name}.yaml"
        recipes[name].write_text(text)
    return f"""
DLCV = {str(REPO)!r}
DATA = {str(data)!r}
ARCHIVE = ""
MOUNT_DRIVE = False
WORK = {str(tmp_path / "work")!r}
YEAR = 2022
RECIPE_A, RECIPE_B, RECIPE_SEG = {str(recipes["a"])!r}, {str(recipes["b"])!r}, {str(recipes["seg"])!r}
BUDGET_A, BUDGET_B, BUDGET_SEG = "none", "none", "none"
ANSWERS = {str(tmp_path / "answers.md")!r}
HANDIN_URLS = {{"p1": "https://example.com/p1.pth", "seg": "https://example.com/seg.pth"}}
"""


def test_the_repository_keeps_the_notebook_without_outputs_and_with_one_parameters_cell():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert [c for c in code if "parameters" in c["metadata"].get("tags", [])] == [code[0]]
    assert "notebooks/hw1.ipynb" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_the_notebook_runs_from_its_parameters_to_the_hand_in_folder(tmp_path, monkeypatch):
    nbformat = need_module("nbformat", "nbformat (the test extras)")
    nbclient = need_module("nbclient", "nbclient and ipykernel (the test extras)")
    need_module("ipykernel", "ipykernel (the test extras)")
    data = tmp_path / "hw1_data"
    synth_p1(data, num_classes=4, train_per_class=12, val_per_class=4)
    synth_p2(data, train=6, validation=3, size=96)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in notebook.cells if c.cell_type == "code")
    first.source = parameters(tmp_path, data)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    work = tmp_path / "work"
    for model in ("model_a", "model_b"):
        assert (work / "runs" / model / "summary.json").is_file() and (work / f"{model}.csv").is_file()
        assert (work / "runs" / model / "figures" / "pca_panels.png").is_file()
    assert len(list((work / "masks").glob("*_mask.png"))) == 3
    assert (work / "report" / "index.html").is_file() and (tmp_path / "answers.md").is_file()
    assert {"hw1_download.sh", "hw1_1.sh", "hw1_2.sh"} <= {p.name for p in (work / "handin").iterdir()}
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "accuracy: " in printed and "mean_iou: " in printed
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the representations and the report's figures, inline
