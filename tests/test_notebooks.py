"""The ordered notebooks: hygiene (thin, parameterised, stripped) and a smoke run of 01-04.

The smoke pipeline runs once (session fixture in conftest.py, one xdist group) with papermill on the
embedded default data in SMOKE mode; each test then checks what one notebook wrote.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bmlib import runner

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_data_curation", "02_pretraining", "03_benchmark_evaluation", "04_interpretation"]
MAX_CELL_LINES = 15


def test_the_ordered_notebooks_exist() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one 'parameters' cell expected, found {len(tagged)}"
    params = ast.parse(tagged[0].source)
    names = [t.id for node in params.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)]
    assert names and all(n.isupper() for n in names), f"{path.name}: parameters must be UPPER_CASE: {names}"
    assert "SMOKE" in names and "RUN_DIR" in names
    assert code.index(tagged[0]) <= 1, "the parameters cell comes right after the imports"
    for i, cell in enumerate(code):
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"{path.name} cell {i}: function/class definitions belong in bmlib"
        n_lines = len([ln for ln in cell.source.splitlines() if ln.strip()])
        assert n_lines <= MAX_CELL_LINES, f"{path.name} cell {i} has {n_lines} lines (max {MAX_CELL_LINES})"
        assert not cell.get("outputs") and cell.get("execution_count") is None, (
            f"{path.name} cell {i}: notebooks are committed without outputs"
        )
    assert any(c.cell_type == "markdown" for c in nb.cells), "prose for the reader is expected"


def _metrics(record: runner.RunRecord, name: str) -> dict:
    return json.loads((Path(record.run_dir) / "metrics" / f"{name}.json").read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_smoke_pipeline_runs(smoke_run: runner.RunRecord) -> None:
    failure = smoke_run.failure()
    assert smoke_run.ok, f"{failure.notebook} failed: {failure.error}" if failure else smoke_run
    assert [nb.notebook for nb in smoke_run.notebooks] == [f"{s}.ipynb" for s in EXPECTED]


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_smoke_outputs(smoke_run: runner.RunRecord) -> None:
    assert smoke_run.ok, smoke_run.failure()
    run = Path(smoke_run.run_dir)
    m01 = _metrics(smoke_run, "01_data_curation")
    assert m01["n_scans"] > 100 and m01["n_tasks"] >= 5
    assert m01["fc_similarity_to_hcp"] > 0.7
    assert (run / "data" / "manifest.csv").exists() and (run / "data" / "tasks.json").exists()
    m02 = _metrics(smoke_run, "02_pretraining")
    assert m02["steps"] > 0 and np.isfinite(m02["final_loss"]) and m02["final_emb_std"] > 0
    assert (run / "pretrain" / "checkpoint.pt").exists() and (run / "pretrain" / "model_card.json").exists()
    m03 = _metrics(smoke_run, "03_benchmark_evaluation")
    auc = m03["benchmark"]["dmn_hyperconnectivity"]["kfold"]["fc_logreg"]["roc_auc"]["mean"]
    assert 0.5 < auc <= 1.0, "the strong planted DMN effect is found by the FC baseline"
    assert (run / "evaluation" / "results.csv").exists()
    m04 = _metrics(smoke_run, "04_interpretation")
    assert m04["univariate.roi_auc"] > 0.8, "the univariate map recovers the planted DMN ROIs"
    assert (run / "interpretation" / "dmn_hyperconnectivity_brain3d.html").exists()
    assert (run / "interpretation" / "dmn_hyperconnectivity_occlusion.png").exists()
