"""Command line: ``python -m bmlib <command> ...`` (also the ``bmlib`` console script).

Commands
--------
pretrain
    ``python -m bmlib pretrain --config cfg.yaml [--data RUN/data] [--out DIR] [--epochs N] ...``
    The YAML keys are the keyword arguments of :func:`bmlib.engine.fit`, plus ``data`` (the
    dataset path) and ``datasets`` (which datasets of a curated folder; default its
    ``pretraining_datasets``); command-line flags override them. Relative paths in the YAML
    file are relative to its folder. Runs unchanged under
    ``torchrun --nproc_per_node=N -m bmlib pretrain ...`` (one process per GPU, or gloo on CPU).

Each command is a ``_add_<command>(subparsers)`` function that registers its parser and sets
``func``; :func:`main` parses and dispatches, so adding a command is one function.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import yaml
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "load_pretrain_config", "load_series_data", "main"]


# --------------------------------------------------------------------------------------------
# pretrain
# --------------------------------------------------------------------------------------------
# flag -> fit() keyword (flags given on the command line override the YAML file)
_PRETRAIN_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--out": ("out_dir", str, "output folder for checkpoint.pt, model_card.json/.md, history.csv"),
    "--preset": ("preset", str, "encoder preset: tiny, small, base or paper"),
    "--epochs": ("epochs", int, "number of epochs"),
    "--batch-size": ("batch_size", int, "batch size per process"),
    "--lr": ("lr", float, "peak learning rate"),
    "--weight-decay": ("weight_decay", float, "AdamW weight decay"),
    "--warmup-epochs": ("warmup_epochs", float, "linear warm-up in epochs"),
    "--min-lr": ("min_lr", float, "final learning rate of the cosine decay"),
    "--grad-clip": ("grad_clip", float, "max gradient norm"),
    "--accum-steps": ("accum_steps", int, "gradient accumulation steps"),
    "--drop-fraction": ("drop_fraction", float, "fraction of timepoints dropped per pFC view"),
    "--view-mode": ("view_mode", str, "pFC views: drop or crop"),
    "--crop-length": ("crop_length", "int_or_float", "timepoints per crop, or a fraction of each scan (view-mode crop)"),
    "--amp": ("amp", str, "mixed precision: auto, bf16, fp16 or off"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:1 or mps"),
    "--seed": ("seed", int, "random seed"),
    "--num-workers": ("num_workers", int, "DataLoader workers"),
    "--resume": ("resume", str, "checkpoint (file or folder) to continue from, or 'auto'"),
    "--checkpoint-every": ("checkpoint_every", int, "epochs between checkpoints"),
    "--max-steps": ("max_steps", int, "stop after this many optimizer steps (smoke runs)"),
    "--log-every": ("log_every", int, "steps between log lines"),
}


def _add_pretrain(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a BrainMass encoder (works under torchrun)",
        description=(
            "Pretrain a BrainMass encoder with bmlib.engine.fit. YAML keys are fit() arguments plus "
            "'data' and 'datasets'; command-line flags override them. Under torchrun each process "
            "trains on its shard and rank 0 writes the outputs."
        ),
    )
    p.add_argument("--config", type=Path, help="YAML file whose keys are fit() arguments (and 'data', 'datasets')")
    p.add_argument(
        "--data",
        type=Path,
        help="a curated dataset folder (with manifest.csv), a .npz of (T, R) arrays or a .npy (N, T, R)",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="datasets of a curated folder to pretrain on (default: its pretraining_datasets from tasks.json)",
    )
    for flag, (dest, kind, help_text) in _PRETRAIN_FLAGS.items():
        p.add_argument(flag, dest=dest, type=_int_or_float if kind == "int_or_float" else kind, default=None,
                       help=help_text)
    p.add_argument("--compile", dest="compile", action="store_true", default=None, help="use torch.compile")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other fit() argument, VALUE parsed as YAML (e.g. --set objective='{mask_ratio: 0.2}')",
    )
    p.set_defaults(func=_cmd_pretrain)


def _int_or_float(text: str) -> int | float:
    """``"30"`` -> 30, ``"0.8"`` -> 0.8 (crop lengths are timepoints or fractions)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected an int or a float, got {text!r}") from err


def load_pretrain_config(path: str | Path | None) -> dict[str, Any]:
    """Read a pretraining YAML config and check its keys against :func:`bmlib.engine.fit`.

    Parameters
    ----------
    path : str or Path or None
        YAML mapping of fit() keyword arguments plus ``data``. None gives ``{}``.

    Returns
    -------
    dict
    """
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"expected a YAML mapping of fit() arguments in {path}, got {type(config).__name__}")
    _check_keys(config, str(path))
    return config


def _check_keys(config: dict[str, Any], where: str) -> None:
    from bmlib.engine import fit_argument_names

    allowed = set(fit_argument_names()) | {"data", "datasets"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(allowed)}")


def load_series_data(path: str | Path, datasets: Sequence[str] | None = None) -> Any:
    """Open pretraining data for :func:`bmlib.engine.fit`.

    Parameters
    ----------
    path : str or Path
        A curated dataset folder (``manifest.csv`` + ``timeseries.h5``, read with
        :class:`bmlib.data.CuratedDataset`), a ``.npz`` holding one ``(T, R)`` array per scan, or
        a ``.npy`` array ``(N, T, R)``.
    datasets : sequence of str, optional
        Curated folders only: the datasets to keep. Default: the folder's
        ``pretraining_datasets`` (``tasks.json``; every dataset when it names none), so held-out
        external cohorts stay out of pretraining.

    Returns
    -------
    CuratedDataset or list of numpy.ndarray or numpy.ndarray
    """
    import numpy as np

    path = Path(path)
    if path.is_dir():
        if not (path / "manifest.csv").is_file():
            raise FileNotFoundError(f"expected a curated dataset folder with manifest.csv, got {path}")
        from bmlib.data import CuratedDataset

        curated = CuratedDataset(path)
        wanted = list(curated.pretraining_datasets if datasets is None else datasets)
        unknown = sorted(set(wanted) - set(curated.datasets))
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} in {path}; it holds {sorted(curated.datasets)}")
        return curated.select(datasets=wanted)
    if datasets is not None:
        raise ValueError(f"datasets= selects datasets of a curated folder, but {path} is a file")
    if not path.is_file():
        raise FileNotFoundError(f"data not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return [np.asarray(npz[k], dtype=np.float32) for k in npz.files]
    if path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim != 3:
            raise ValueError(f"expected a .npy array (n_scans, n_timepoints, n_rois), got shape {arr.shape}")
        return arr.astype(np.float32, copy=False)
    raise ValueError(f"expected a curated dataset folder, a .npz or a .npy file, got {path}")


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected --set KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    _check_keys(out, "--set")
    return out


def _pretrain_arguments(args: argparse.Namespace) -> tuple[str, list[str] | None, dict[str, Any]]:
    """The data path, the datasets to keep and fit() keywords: YAML file, then --set, then flags.

    Relative paths in the YAML file (``data``, ``out_dir``, ``resume``) are relative to the
    file's folder; those given on the command line, to the working directory.
    """
    config = load_pretrain_config(args.config)
    if args.config is not None:
        for key in ("data", "out_dir", "resume"):
            value = config.get(key)
            if isinstance(value, str) and value != "auto" and not Path(value).is_absolute():
                config[key] = str((args.config.parent / value).resolve())
    config.update(_parse_overrides(args.overrides))
    for dest, _kind, _help in _PRETRAIN_FLAGS.values():
        value = getattr(args, dest)
        if value is not None:
            config[dest] = value
    for dest in ("compile", "progress"):
        if getattr(args, dest) is not None:
            config[dest] = getattr(args, dest)
    data_path = config.pop("data", None)
    datasets = config.pop("datasets", None)
    if args.datasets is not None:
        datasets = args.datasets
    if isinstance(datasets, str):
        datasets = [datasets]
    if args.data is not None:
        data_path = str(args.data)
    if data_path is None:
        raise ValueError("no data: give --data PATH or a 'data:' key in the config")
    return str(data_path), datasets, config


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from bmlib import distributed as bdist
    from bmlib.engine import fit

    try:
        data_path, datasets, config = _pretrain_arguments(args)
        data = load_series_data(data_path, datasets)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"bmlib pretrain: error: {err}", file=sys.stderr)
        return 2
    # CPU training under torchrun needs gloo even on a machine with GPUs
    info = bdist.init_distributed(backend="gloo" if str(config.get("device", "auto")).startswith("cpu") else None)
    if info.is_main:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        result = fit(data, **config)
        if info.is_main:
            summary = {
                "checkpoint": None if result.checkpoint_path is None else str(result.checkpoint_path),
                "steps": result.card.get("steps"),
                "final_losses": result.card.get("final_losses"),
                "wall_time_s": result.card.get("wall_time_s"),
                "device": result.card.get("device"),
                "world_size": info.world_size,
            }
            print(json.dumps(summary, indent=2))
    finally:
        bdist.cleanup()
    return 0


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``bmlib`` argument parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="bmlib", description="bmlib: brain-network foundation models (BrainMass) from the command line."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_pretrain(subparsers)
    _add_notebooks(subparsers)
    return parser


def _add_notebooks(subparsers: Any) -> None:
    """``bmlib notebooks run|sweep|index``: papermill runs of the ordered notebooks."""
    nb = subparsers.add_parser("notebooks", help="run the ordered notebooks with papermill")
    sub = nb.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="notebook parameter (value parsed as YAML); repeatable")
    common.add_argument("--params-file", type=Path, help="YAML file of NAME: VALUE parameters")
    common.add_argument("--smoke", action="store_true", help="SMOKE=True: small sizes, minutes")
    common.add_argument("--only", nargs="+", help="notebook prefixes to run, e.g. 03 04")
    run = sub.add_parser("run", parents=[common], help="one run into a run folder")
    run.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/2026-11-25")
    run.set_defaults(func=_cmd_notebooks_run)
    sweep = sub.add_parser("sweep", parents=[common], help="one run per point of a parameter grid")
    sweep.add_argument("--out", type=Path, required=True, help="folder receiving one run folder per point")
    sweep.add_argument("--grid", type=Path, required=True, help="YAML file NAME: [values, ...]")
    sweep.add_argument("--plot-metric", action="append", default=None, metavar="METRIC",
                       help="metric compared in sweep.png (repeatable; default: those that vary)")
    sweep.set_defaults(func=_cmd_notebooks_sweep)
    index = sub.add_parser("index", help="print the index of runs of a folder")
    index.add_argument("root", type=Path, nargs="?", default=Path("runs"))
    index.set_defaults(func=_cmd_notebooks_index)


def _notebook_params(args: argparse.Namespace) -> dict[str, Any]:
    from bmlib import runner

    params: dict[str, Any] = {}
    if args.params_file is not None:
        params.update(yaml.safe_load(args.params_file.read_text()) or {})
    params.update({name: runner.parse_parameter_value(value) for name, value in args.parameter})
    return params


def _cmd_notebooks_run(args: argparse.Namespace) -> int:
    from bmlib import runner

    record = runner.run_notebooks(args.out, _notebook_params(args), smoke=args.smoke, only=args.only)
    for nb in record.notebooks:
        print(f"{nb.notebook:32s} {nb.status:8s} {nb.wall_s:8.1f} s")
    failure = record.failure()
    if failure is not None:
        print(f"FAILED in {failure.notebook}:\n{failure.error}", file=sys.stderr)
        return 1
    print(f"run folder: {record.run_dir}")
    return 0


def _cmd_notebooks_sweep(args: argparse.Namespace) -> int:
    from bmlib import runner

    grid = yaml.safe_load(args.grid.read_text())
    table = runner.run_sweep(args.out, grid, _notebook_params(args), smoke=args.smoke, only=args.only,
                             plot_metrics=args.plot_metric)
    print(table.to_string(index=False))
    print(f"comparison: {args.out / 'sweep.csv'}, {args.out / 'sweep.png'}")
    return 0 if (table["status"] == "ok").all() else 1


def _cmd_notebooks_index(args: argparse.Namespace) -> int:
    from bmlib import runner

    print(runner.read_index(args.root).to_string(index=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bmlib`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    Configuration errors (bad values, unknown keys, missing files) print one line on stderr and
    return 2; argparse usage errors exit with status 2 as usual.
    """
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    return int(args.func(args))
