"""notebooks/: both run top to bottom on the tiny synthetic set, and are stored without outputs.

The test points them at the session's cache, data and trained run through the environment variables
their first cell reads, and runs them in a temporary folder with the ``python3`` kernel.
"""

from __future__ import annotations

import shlex

import nbformat
import pytest
from conftest import REPO, tiny_overrides
from nbclient import NotebookClient

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_both_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_data.ipynb", "02_results.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    first = notebook.cells[0].source
    assert "To look at your own" in first  # says at the top what to change


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, request, cache_dir):
    monkeypatch.setenv("METALCORE_CACHE", str(cache_dir))
    monkeypatch.setenv("METALCORE_OVERRIDES", shlex.join(tiny_overrides(cache_dir)))
    if path.name.startswith("02"):
        monkeypatch.setenv("METALCORE_RUN_DIR", str(request.getfixturevalue("trained_run")))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, [o.output_type for o in outputs]  # every notebook draws at least two figures
    text = "".join(o.get("text", "") for o in outputs)
    assert "hardcore" in text and "metal" in text
