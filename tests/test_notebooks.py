"""The notebooks run top to bottom offline on the shipped demo model, their own assert cells checking the outputs;
the committed copies carry no outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"agents", "quickstart", "presets", "lora", "accuracy", "speed"}


@pytest.fixture(scope="module")
def notebook_cache(tmp_path_factory) -> Path:
    """One export cache shared by the notebooks (they load the same presets), apart from the other tests'."""
    return tmp_path_factory.mktemp("notebook-cache")


def test_every_notebook_is_there():
    assert {p.stem for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stale, f"{notebook.name}: cells {stale} carry outputs; clear them before committing"
    assert any("assert " in c.source for c in nb.cells if c.cell_type == "code"), "no cell checks the results"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(notebook, tmp_path, notebook_cache, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("OV_CAUSAL_CACHE_DIR", str(notebook_cache))  # the kernel inherits the environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell (or its assert) fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "Traceback" not in stderr and "is not supported for text-generation" not in stderr
    if notebook.stem in ("quickstart", "presets", "accuracy", "speed"):  # they draw a chart
        assert any("image/png" in o.get("data", {}) for o in outputs)
