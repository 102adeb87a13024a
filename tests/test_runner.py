"""The papermill runner: run folders, parameters, index of runs, sweeps, failures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from bmlib import runner


def _notebook(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("import json, pathlib"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(
        folder / "01_make.ipynb",
        'RUN_DIR = "out"\nSMOKE = False\nVALUE = 1',
        'd = pathlib.Path(RUN_DIR, "metrics"); d.mkdir(parents=True, exist_ok=True)\n'
        '(d / "01_make.json").write_text(json.dumps({"value": VALUE * 2, "smoke": SMOKE}))',
    )
    _notebook(
        folder / "02_use.ipynb",
        'RUN_DIR = "out"\nFAIL = False',
        'v = json.loads(pathlib.Path(RUN_DIR, "metrics", "01_make.json").read_text())["value"]\n'
        'assert not FAIL, "asked to fail"\n'
        'pathlib.Path(RUN_DIR, "metrics", "02_use.json").write_text(json.dumps({"seen": v}))',
    )
    return folder


@pytest.mark.slow
def test_run_passes_parameters_and_indexes(notebooks: Path, tmp_path: Path) -> None:
    rec = runner.run_notebooks(tmp_path / "runs" / "a", {"VALUE": 5}, smoke=True, notebook_dir=notebooks)
    assert rec.ok, rec
    assert [nb.status for nb in rec.notebooks] == ["ok", "ok"]
    assert rec.metrics == {"01_make.value": 10, "01_make.smoke": True, "02_use.seen": 10}
    assert (tmp_path / "runs" / "a" / "notebooks" / "02_use.ipynb").exists()
    index = runner.read_index(tmp_path / "runs")
    assert list(index["status"]) == ["ok"]
    assert json.loads(index.loc[0, "parameters"]) == {"SMOKE": True, "VALUE": 5}

    # a re-run of 02 alone reuses the earlier outputs in the run folder
    rec2 = runner.run_notebooks(tmp_path / "runs" / "a", only=["02"], notebook_dir=notebooks)
    assert rec2.ok and [nb.notebook for nb in rec2.notebooks] == ["02_use.ipynb"]
    assert len(runner.read_index(tmp_path / "runs")) == 2


@pytest.mark.slow
def test_failure_is_recorded_and_sweep_goes_on(notebooks: Path, tmp_path: Path) -> None:
    table = runner.run_sweep(tmp_path / "sweep", {"FAIL": [True, False]}, notebook_dir=notebooks)
    assert list(table["status"]) == ["failed", "ok"]
    assert table.loc[0, "failed_notebook"] == "02_use.ipynb"
    run = json.loads((tmp_path / "sweep" / "fail=True" / "run.json").read_text())
    failed = [nb for nb in run["notebooks"] if nb["status"] == "failed"][0]
    assert "asked to fail" in failed["error"] and failed["failed_cell"] is not None
    assert (tmp_path / "sweep" / "sweep.csv").exists() and (tmp_path / "sweep" / "sweep.png").stat().st_size > 0
    assert len(runner.read_index(tmp_path / "sweep")) == 2


@pytest.mark.slow
def test_sweep_over_two_parameters_writes_comparison(notebooks: Path, tmp_path: Path) -> None:
    table = runner.run_sweep(tmp_path / "sw", {"VALUE": [1, 3], "FAIL": [False]}, notebook_dir=notebooks,
                             plot_metrics=["01_make.value", "02_use.seen"])
    assert list(table["01_make.value"]) == [2, 6] and list(table["02_use.seen"]) == [2, 6]
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == [
        "index.csv", "sweep.csv", "sweep.png", "value=1_fail=False", "value=3_fail=False"]


def test_unknown_parameter_is_refused(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"declared by none of the notebooks"):
        runner.run_notebooks(tmp_path / "r", {"VALEU": 3}, notebook_dir=notebooks)
    with pytest.raises(ValueError, match="UPPER_CASE"):
        runner.run_notebooks(tmp_path / "r", {"value": 3}, notebook_dir=notebooks)


def test_only_and_discovery_errors(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matched no notebook"):
        runner.run_notebooks(tmp_path / "r", only=["09"], notebook_dir=notebooks)
    with pytest.raises(FileNotFoundError, match="no numbered notebooks"):
        runner.discover_notebooks(tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        runner.run_sweep(tmp_path / "s", {"VALUE": []}, notebook_dir=notebooks)


def test_parse_parameter_value() -> None:
    assert runner.parse_parameter_value("[0.1, 0.2]") == [0.1, 0.2]
    assert runner.parse_parameter_value("cpu") == "cpu"
