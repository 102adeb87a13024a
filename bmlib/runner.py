"""Run the ordered notebooks with papermill: one run folder per run, an index of runs, sweeps.

A *run folder* is where notebooks hand results to each other (see ``docs/architecture.md``)::

    runs/
      index.csv                      one row per run (parameters, status, wall time, metrics)
      20261125-221500/
        notebooks/01_data_curation.ipynb ...   executed copies
        data/ pretrain/ evaluation/ interpretation/ metrics/ figures/
        run.json                     parameters, per-notebook status and timings

Every notebook has one cell tagged ``parameters`` with UPPER_CASE names. The runner passes
``RUN_DIR`` (absolute) and ``SMOKE`` to every notebook that declares them, plus any
``-p NAME VALUE`` the user gives, but only to notebooks that declare that name (so a
parameter for notebook 02 does not trigger papermill warnings in 01).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bmlib._io import atomic_path, atomic_write_json

__all__ = [
    "NOTEBOOK_DIR",
    "NotebookResult",
    "RunRecord",
    "discover_notebooks",
    "notebook_parameters",
    "run_notebooks",
    "run_sweep",
    "read_index",
    "collect_metrics",
    "parse_parameter_value",
]

#: Folder of the ordered notebooks of a source checkout (``<repo>/notebooks``).
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

INDEX_NAME = "index.csv"


@dataclass
class NotebookResult:
    """Outcome of one executed notebook."""

    notebook: str
    status: str  # "ok" | "failed" | "skipped"
    wall_s: float
    output: str | None = None
    failed_cell: int | None = None
    error: str | None = None


@dataclass
class RunRecord:
    """Outcome of one run of the pipeline (possibly a subset of notebooks)."""

    run_id: str
    run_dir: str
    parameters: dict[str, Any]
    status: str
    wall_s: float
    started: str
    notebooks: list[NotebookResult] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every notebook ran."""
        return self.status == "ok"

    def failure(self) -> NotebookResult | None:
        """The notebook that failed, if any."""
        return next((nb for nb in self.notebooks if nb.status == "failed"), None)


def discover_notebooks(notebook_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Return the ordered notebooks ``NN_name.ipynb`` of ``notebook_dir``.

    Raises
    ------
    FileNotFoundError
        If the folder holds no numbered notebook.
    """
    folder = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not found:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) found in {folder}")
    return found


def _select(notebooks: list[Path], only: Sequence[str] | None) -> list[Path]:
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(o) or nb.stem == o for o in only)]
    if not chosen:
        names = ", ".join(nb.name for nb in notebooks)
        raise ValueError(f"--only {list(only)} matched no notebook; available: {names}")
    return chosen


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Names and defaults declared in a notebook's ``parameters`` cell.

    Raises
    ------
    ValueError
        If the notebook has no cell tagged ``parameters`` or more than one.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def parse_parameter_value(text: str) -> Any:
    """Parse a command-line parameter value as YAML (``3`` -> int, ``true`` -> bool, ``[1,2]`` -> list).

    Examples
    --------
    >>> parse_parameter_value("0.3"), parse_parameter_value("tiny"), parse_parameter_value("true")
    (0.3, 'tiny', True)
    """
    import yaml

    return yaml.safe_load(text)


def collect_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Flatten every ``metrics/*.json`` of a run folder into ``{"<notebook>.<key>": value}``.

    Only scalars (numbers, strings, booleans) are kept: the index is a table.
    """
    out: dict[str, Any] = {}
    for path in sorted(Path(run_dir, "metrics").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key, value in _flatten(data):
            out[f"{path.stem}.{key}"] = value
    return out


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}{k}." if not isinstance(v, Mapping) else f"{prefix}{k}.")
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        yield prefix.rstrip("."), obj


def run_notebooks(
    run_dir: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    smoke: bool = False,
    only: Sequence[str] | None = None,
    notebook_dir: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    index: bool = True,
    progress: bool = False,
    log_output: bool = False,
) -> RunRecord:
    """Execute the ordered notebooks into ``run_dir`` with papermill.

    Parameters
    ----------
    run_dir : path
        Output folder of this run. Created if missing; executed notebooks go to
        ``run_dir/notebooks``. Notebooks 03 and 04 can be re-run alone (``only=["03"]``)
        on a run folder that already holds the outputs of 01 and 02, or pointed at another
        run's files through their ``DATA_DIR`` / ``CHECKPOINT`` parameters.
    parameters : mapping, optional
        UPPER_CASE parameter values. Each is passed only to the notebooks that declare it;
        a name no notebook declares is an error (a typo would otherwise be ignored).
    smoke : bool, default=False
        Pass ``SMOKE=True`` (small sizes, minutes on a laptop CPU).
    only : sequence of str, optional
        Notebook prefixes or stems to run (``["03", "04"]``); default all, in order.
    kernel_name : str, optional
        Jupyter kernel; default: the notebook's own (``python3`` of this environment).
    index : bool, default=True
        Append this run to ``index.csv`` in the parent folder of ``run_dir``.

    Returns
    -------
    RunRecord
        Status per notebook. A failed notebook stops the run; the record names the failing
        cell and the error, and is written to ``run.json`` and the index all the same.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    run_path = Path(run_dir).resolve()
    run_path.mkdir(parents=True, exist_ok=True)
    notebooks = _select(discover_notebooks(notebook_dir), only)
    params = dict(parameters or {})
    bad = [k for k in params if not k.isupper()]
    if bad:
        raise ValueError(f"notebook parameters are UPPER_CASE names; got {bad}")
    declared = {nb.name: notebook_parameters(nb) for nb in notebooks}
    unknown = sorted(set(params) - set().union(*(set(d) for d in declared.values())))
    if unknown:
        raise ValueError(
            f"parameter(s) {unknown} are declared by none of the notebooks "
            f"{[nb.name for nb in notebooks]}; check the spelling"
        )
    base = {"RUN_DIR": str(run_path), "SMOKE": bool(smoke), **params}

    started = _dt.datetime.now().isoformat(timespec="seconds")
    record = RunRecord(
        run_id=run_path.name, run_dir=str(run_path), parameters={"SMOKE": bool(smoke), **params},
        status="running", wall_s=0.0, started=started,
    )
    t_run = time.perf_counter()
    failed = False
    for nb in notebooks:
        if failed:
            record.notebooks.append(NotebookResult(nb.name, "skipped", 0.0))
            continue
        nb_params = {k: v for k, v in base.items() if k in declared[nb.name]}
        out_nb = run_path / "notebooks" / nb.name
        out_nb.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(nb), str(out_nb), parameters=nb_params, kernel_name=kernel_name,
                cwd=str(nb.parent), progress_bar=progress, log_output=log_output,
            )
            record.notebooks.append(NotebookResult(nb.name, "ok", time.perf_counter() - t0, str(out_nb)))
        except PapermillExecutionError as exc:
            failed = True
            record.notebooks.append(NotebookResult(
                nb.name, "failed", time.perf_counter() - t0, str(out_nb),
                failed_cell=exc.cell_index, error=f"{exc.ename}: {exc.evalue}\n--- cell {exc.cell_index} ---\n{exc.source}",
            ))
        except Exception as exc:  # kernel died, notebook unreadable, ...
            failed = True
            record.notebooks.append(NotebookResult(
                nb.name, "failed", time.perf_counter() - t0, str(out_nb),
                error="".join(traceback.format_exception_only(type(exc), exc)).strip(),
            ))
    record.wall_s = time.perf_counter() - t_run
    record.status = "failed" if failed else "ok"
    record.metrics = collect_metrics(run_path)
    atomic_write_json(run_path / "run.json", asdict(record))
    if index:
        _append_index(run_path.parent, record)
    return record


def _append_index(root: Path, record: RunRecord) -> Path:
    """Add one row for ``record`` to ``root/index.csv`` (rewritten atomically)."""
    failure = record.failure()
    row: dict[str, Any] = {
        "run_id": record.run_id,
        "run_dir": record.run_dir,
        "started": record.started,
        "status": record.status,
        "wall_s": round(record.wall_s, 2),
        "failed_notebook": failure.notebook if failure else None,
        "failed_cell": failure.failed_cell if failure else None,
        "parameters": json.dumps(record.parameters, sort_keys=True, default=str),
    }
    row.update({f"wall_s.{nb.notebook.split('_')[0]}": round(nb.wall_s, 2) for nb in record.notebooks})
    row.update(record.metrics)
    path = root / INDEX_NAME
    old = read_index(root)
    table = pd.concat([old, pd.DataFrame([row])], ignore_index=True) if len(old) else pd.DataFrame([row])
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def read_index(root: str | os.PathLike[str]) -> pd.DataFrame:
    """The table of runs in ``root/index.csv`` (empty if there is none)."""
    path = Path(root) / INDEX_NAME
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path)


def run_sweep(
    root: str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]],
    parameters: Mapping[str, Any] | None = None,
    *,
    smoke: bool = False,
    only: Sequence[str] | None = None,
    notebook_dir: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    plot_metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Run the pipeline (or ``only`` some notebooks) once per point of a parameter grid.

    Parameters
    ----------
    root : path
        Folder that receives one run folder per grid point (``<root>/<name>=<value>_...``),
        ``index.csv``, ``sweep.csv`` and the comparison plot ``sweep.png``
        (:func:`bmlib.plotting.plot_sweep`).
    grid : mapping of str to sequence
        Parameter name -> values, e.g. ``{"DROP_FRACTION": [0.1, 0.2], "MASK_RATIO": [0.1, 0.3]}``.
    parameters : mapping, optional
        Values shared by every run.
    plot_metrics : sequence of str, optional
        Metric columns compared in ``sweep.png`` (default: those that vary, and wall time).

    Returns
    -------
    pandas.DataFrame
        One row per grid point: its values, status, wall time and headline metrics. A failed
        run is recorded and the sweep goes on with the others.
    """
    if not grid:
        raise ValueError("grid is empty: give at least one parameter with a list of values")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    root_path = Path(root)
    names = list(grid)
    rows = []
    for combo in itertools.product(*(grid[n] for n in names)):
        point = dict(zip(names, combo, strict=True))
        run_id = "_".join(f"{n.lower()}={_slug(v)}" for n, v in point.items())
        record = run_notebooks(
            root_path / run_id, {**(parameters or {}), **point}, smoke=smoke, only=only,
            notebook_dir=notebook_dir, kernel_name=kernel_name,
        )
        failure = record.failure()
        rows.append({
            **point, "run_id": run_id, "status": record.status, "wall_s": record.wall_s,
            "failed_notebook": failure.notebook if failure else None, **record.metrics,
        })
    table = pd.DataFrame(rows)
    with atomic_path(root_path / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False)
    import matplotlib.pyplot as plt

    from bmlib.plotting import plot_sweep

    fig = plot_sweep(table, names, plot_metrics, output_file=root_path / "sweep.png")
    plt.close(fig)
    return table


def _slug(value: Any) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in str(value))
