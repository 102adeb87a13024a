"""One call per evaluation: benchmark (k-fold, LOSO), few-shot and zero-shot, as tidy tables.

Typical notebook use::

    data = prepare_benchmark_data(RUN / "data", checkpoint=RUN / "pretrain/checkpoint.pt",
                                  cache_dir=RUN / "features")
    bench = run_benchmark(data, n_splits=FOLDS, n_repeats=REPEATS, out_dir=RUN / "evaluation")
    bench.table()

Every model of a task is evaluated on the **same** split table (written to
``<out_dir>/splits/<task>_<protocol>.csv`` and reused by later runs with the same settings), with
the FC of the whole scan (no augmentation). Tables are tidy (one row per fold x metric) and saved
as CSV and Parquet:

- ``per_fold``: task, kind, model, protocol, repeat, fold, fold_name, n_train, n_test,
  n_test_patients, fit_seconds, metric, value (few-shot adds ``k``; zero-shot adds
  ``representation`` and ``method``);
- ``summary``: :func:`bmlib.evaluation.metrics.summarize` of ``per_fold`` (mean, std, 95% CI);
- ``predictions``: one row per test scan and fold (``y_true``, ``score``) for ROC curves.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from bmlib._io import atomic_path, atomic_write_json
from bmlib.evaluation.metrics import METRICS, compute_metrics, format_ci, summarize
from bmlib.evaluation.models import MODEL_NAMES, BinaryModel, ModelInputs, build_model
from bmlib.evaluation.splits import (
    few_shot_splits,
    iter_folds,
    kfold_splits,
    load_splits,
    loso_splits,
    save_splits,
    validate_samples,
    zero_shot_splits,
)
from bmlib.evaluation.zeroshot import NORMATIVE_METHODS, NormativeModel
from bmlib.features import cached_features, random_init_like, weights_sha256

__all__ = [
    "BenchmarkData",
    "BenchmarkResult",
    "Cohort",
    "ZERO_SHOT_REPRESENTATIONS",
    "headline_metrics",
    "prepare_benchmark_data",
    "run_benchmark",
    "run_few_shot",
    "run_zero_shot",
    "task_samples",
    "write_metrics",
]

log = logging.getLogger(__name__)

#: zero-shot representation -> :meth:`ModelInputs.get` kind
ZERO_SHOT_REPRESENTATIONS: dict[str, str] = {
    "pretrained": "features:pretrained",
    "random": "features:random",
    "fc": "fc_vector",
}


@dataclass
class Cohort:
    """An in-memory dataset with the interface of :class:`bmlib.data.CuratedDataset`.

    Attributes
    ----------
    manifest : DataFrame
        One row per scan: ``sample_id, participant, site`` and the task label columns
        (``diagnosis``...), optionally ``dataset``.
    series : mapping of str to ndarray (T, R)
        Time series by sample id.
    tasks : mapping of str to dict
        Task specs as in ``tasks.json`` (``datasets``, ``kind``, ``label_column``,
        ``positive``, ``negative``).
    """

    manifest: pd.DataFrame
    series: Mapping[str, np.ndarray]
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def load(self, sample_id: str) -> np.ndarray:
        """Time series ``(T, R)`` of one scan."""
        try:
            return np.asarray(self.series[str(sample_id)])
        except KeyError:
            raise KeyError(f"unknown sample_id {sample_id!r}") from None


def _resolve_dataset(dataset: Any) -> Any:
    if isinstance(dataset, (str, os.PathLike)):
        from bmlib.data import CuratedDataset

        return CuratedDataset(dataset)
    for attr in ("manifest", "load", "tasks"):
        if not hasattr(dataset, attr):
            raise TypeError(
                f"expected a curated-dataset folder, a CuratedDataset or a Cohort (with .manifest, .load, "
                f".tasks), got {type(dataset).__name__} without .{attr}"
            )
    return dataset


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def task_samples(manifest: pd.DataFrame, spec: Mapping[str, Any], *, name: str = "task") -> pd.DataFrame:
    """The labelled scans of one task.

    Parameters
    ----------
    manifest : DataFrame
        ``sample_id, participant, site``, the label column, optionally ``dataset`` and ``qc_pass``.
    spec : mapping
        ``label_column`` (or ``label``; default ``"diagnosis"``), ``positive`` (default
        ``"patient"``) and ``negative`` (default ``"control"``), each a value or a list;
        ``datasets`` (optional) restricts to those values of the ``dataset`` column.
    name : str
        For error messages.

    Returns
    -------
    DataFrame
        ``sample_id, participant, site, label`` (1 = positive class) in manifest order, plus
        ``dataset`` when present.
    """
    label_col = str(spec.get("label_column", spec.get("label", "diagnosis")))
    if label_col not in manifest.columns:
        raise ValueError(
            f"task {name!r}: label column {label_col!r} not in the manifest columns {list(manifest.columns)}"
        )
    positive = _as_list(spec.get("positive", "patient"))
    negative = _as_list(spec.get("negative", "control"))
    keep = np.ones(len(manifest), dtype=bool)
    if "qc_pass" in manifest.columns:
        keep &= manifest["qc_pass"].fillna(False).to_numpy(dtype=bool)
    if spec.get("datasets") and "dataset" in manifest.columns:
        keep &= manifest["dataset"].astype(str).isin(_as_list(spec["datasets"])).to_numpy()
    values = manifest[label_col].astype(str).to_numpy()
    keep &= np.isin(values, positive + negative)
    rows = manifest.loc[keep]
    out = pd.DataFrame(
        {
            "sample_id": rows["sample_id"].astype(str).to_numpy(),
            "participant": rows["participant"].astype(str).to_numpy(),
            "site": rows["site"].astype(str).to_numpy() if "site" in rows.columns else np.full(len(rows), "site0"),
            "label": np.isin(values[keep], positive).astype(np.int64),
        }
    )
    if "dataset" in rows.columns:
        out["dataset"] = rows["dataset"].astype(str).to_numpy()
    if out["label"].nunique() < 2:
        raise ValueError(
            f"task {name!r}: expected scans of both classes ({positive} vs {negative} in {label_col!r}), "
            f"got {int(out['label'].sum())} positive and {int((out['label'] == 0).sum())} negative"
        )
    validate_samples(out)
    return out


@dataclass
class BenchmarkData:
    """Everything the evaluations need, computed once: inputs of every task's scans.

    Attributes
    ----------
    inputs : ModelInputs
        FC (N, R, R), time series and frozen features (``"pretrained"``, ``"random"``) of the
        union of the tasks' scans.
    manifest : DataFrame
        The dataset's manifest (all columns).
    tasks : dict of str to dict
        The selected task specs.
    encoder : nn.Module or None
        The pretrained encoder (None: baselines only).
    identity : dict
        Checkpoint path, encoder weights sha256, feature cache keys, FC options.
    """

    inputs: ModelInputs
    manifest: pd.DataFrame
    tasks: dict[str, dict[str, Any]]
    encoder: nn.Module | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    def samples(self, task: str) -> pd.DataFrame:
        """:func:`task_samples` of one task (columns ``sample_id, participant, site, label``)."""
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(self.tasks)}")
        return task_samples(self.manifest, self.tasks[task], name=task)

    def task_inputs(self, task: str) -> tuple[pd.DataFrame, ModelInputs]:
        """The task's samples and the matching slice of :attr:`inputs` (same order)."""
        samples = self.samples(task)
        pos = pd.Index(self.inputs.sample_ids).get_indexer(samples["sample_id"].to_numpy())
        if (pos < 0).any():
            raise ValueError(f"task {task!r} names scans that were not prepared")
        return samples, self.inputs.take(pos)


def prepare_benchmark_data(
    dataset: Any,
    *,
    checkpoint: str | os.PathLike[str] | nn.Module | None = None,
    tasks: Sequence[str] | None = None,
    device: str | torch.device | None = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int | None = 0,
    fc_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 256,
) -> BenchmarkData:
    """Load the tasks' scans once: FC, time series, frozen pretrained and random-init features.

    Parameters
    ----------
    dataset : path, CuratedDataset or Cohort
        A curated-dataset folder (``<run>/data``) or an object with ``.manifest``, ``.load`` and
        ``.tasks``.
    checkpoint : path or nn.Module, optional
        The pretrained encoder (:func:`bmlib.model.load_encoder`). None: baselines only.
    tasks : sequence of str, optional
        Task names (default: all of ``dataset.tasks``).
    device : str or torch.device, default="cpu"
        Where features are extracted.
    cache_dir : path, optional
        Feature cache (``<run>/features``), keyed by weights sha256 + exact FC + sample ids.
    seed : int or None, default=0
        Seeds the frozen random-init encoder (through a stream derived from it, so a checkpoint
        initialised with ``seed`` itself is never reproduced by accident).
    fc_kwargs : mapping, optional
        FC options for :func:`bmlib.connectivity.fc_list` (default: empirical Pearson, as in
        pretraining).
    batch_size : int, default=256

    Returns
    -------
    BenchmarkData
    """
    from bmlib.connectivity import fc_list

    ds = _resolve_dataset(dataset)
    all_tasks = {str(k): dict(v) for k, v in dict(ds.tasks).items()}
    if not all_tasks:
        raise ValueError("the dataset defines no labelled tasks (tasks.json is empty)")
    names = list(all_tasks) if tasks is None else [str(t) for t in ([tasks] if isinstance(tasks, str) else tasks)]
    unknown = [t for t in names if t not in all_tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the dataset has {sorted(all_tasks)}")
    selected = {t: all_tasks[t] for t in names}
    manifest = ds.manifest.reset_index(drop=True)
    used = set()
    for t in names:
        used.update(task_samples(manifest, selected[t], name=t)["sample_id"].tolist())
    ids = np.array([s for s in manifest["sample_id"].astype(str).to_numpy() if s in used])
    series = tuple(np.asarray(ds.load(s), dtype=np.float32) for s in ids)
    fc_kwargs = dict(fc_kwargs or {})
    fc = fc_list(list(series), **fc_kwargs).cpu().numpy().astype(np.float32, copy=False)
    features: dict[str, np.ndarray] = {}
    identity: dict[str, Any] = {"fc_kwargs": {k: str(v) for k, v in fc_kwargs.items()}, "n_samples": len(ids)}
    encoder = None
    if checkpoint is not None:
        if isinstance(checkpoint, nn.Module):
            encoder = checkpoint
            identity["checkpoint"] = "<in-memory encoder>"
        else:
            from bmlib.model import load_encoder

            encoder, card = load_encoder(checkpoint)
            identity["checkpoint"] = str(checkpoint)
            identity["card_weights_sha256"] = card.get("weights_sha256")
        identity["encoder_weights_sha256"] = weights_sha256(encoder)
        kw = dict(cache_dir=cache_dir, batch_size=batch_size, device=device, keep_rois=False)
        pre = cached_features(encoder, fc, ids, **kw)
        random_encoder = random_init_like(encoder, _fold_seed(seed, 7919))  # its own stream, not `seed`
        if weights_sha256(random_encoder) == identity["encoder_weights_sha256"]:
            raise ValueError("the random-init encoder equals the given encoder: it was never trained "
                             "(or was initialised with the same seed); pass a pretrained checkpoint")
        rnd = cached_features(random_encoder, fc, ids, **kw)
        features = {"pretrained": pre.pooled, "random": rnd.pooled}
        identity["feature_keys"] = {"pretrained": pre.key, "random": rnd.key}
    inputs = ModelInputs(sample_ids=ids, fc=fc, series=series, features=features)
    return BenchmarkData(inputs=inputs, manifest=manifest, tasks=selected, encoder=encoder, identity=identity)


@dataclass
class BenchmarkResult:
    """Tidy results of :func:`run_benchmark`, :func:`run_few_shot` or :func:`run_zero_shot`.

    Attributes
    ----------
    per_fold, summary, predictions : DataFrame
        See the module docstring.
    splits : dict of str to DataFrame
        Split tables by ``"<task>/<protocol>"``.
    config : dict
        The call's settings and the data identity (saved as ``config.json``).
    skipped : list of str
        What could not be evaluated, and why.
    out_dir : Path or None
    """

    per_fold: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    config: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    out_dir: Path | None = None

    def table(
        self,
        metrics: Sequence[str] = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity"),
        *,
        digits: int = 3,
    ) -> pd.DataFrame:
        """Wide display table: one row per task x protocol x model (x k), cells ``mean [CI]``."""
        s = self.summary[self.summary["metric"].isin(list(metrics))]
        keys = [c for c in ("task", "protocol", "k", "model") if c in s.columns]
        cells = s.assign(cell=[format_ci(m, lo, hi, digits) for m, lo, hi in
                               zip(s["mean"], s["ci_low"], s["ci_high"], strict=True)])
        wide = cells.pivot_table(index=keys, columns="metric", values="cell", aggfunc="first", sort=False)
        n = s.groupby(keys, sort=False)["n"].max().rename("folds")
        wide = wide.join(n)
        return wide[[m for m in metrics if m in wide.columns] + ["folds"]]


def _fold_seed(seed: int | None, *parts: int) -> int:
    return int(np.random.SeedSequence([0 if seed is None else seed, *parts]).generate_state(1)[0] % (2**31 - 1))


def _samples_sha(samples: pd.DataFrame) -> str:
    lines = samples[["sample_id", "participant", "site", "label"]].astype(str).agg(",".join, axis=1)
    return hashlib.sha256("\n".join(sorted(lines.tolist())).encode()).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _task_splits(
    samples: pd.DataFrame,
    task: str,
    protocol: str,
    params: dict[str, Any],
    builder: Callable[[], pd.DataFrame],
    out_dir: Path | None,
    reuse: bool,
) -> pd.DataFrame:
    """Build a split table, or reuse the one on disk made with the same settings and samples."""
    if out_dir is None:
        return builder()
    path = out_dir / "splits" / f"{_safe(task)}_{protocol}.csv"
    meta = {"task": task, "protocol": protocol, "params": params, "samples_sha256": _samples_sha(samples)}
    if reuse and path.is_file():
        import json

        meta_path = path.with_suffix(".json")
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if old != meta:
            raise ValueError(
                f"split file {path} was made with other settings or samples ({old}) than this call ({meta}); "
                "delete it or pass reuse_splits=False to rebuild"
            )
        return load_splits(path)
    splits = builder()
    save_splits(splits, path)
    atomic_write_json(path.with_suffix(".json"), meta)
    return splits


def _resolve_models(
    models: Sequence[str] | Mapping[str, Callable[[], BinaryModel]] | None,
    encoder: nn.Module | None,
) -> dict[str, Callable[[int], BinaryModel]] | list[str]:
    if models is None:
        return [m for m, (_, needs) in MODEL_NAMES.items() if encoder is not None or not needs]
    if isinstance(models, Mapping):
        return dict(models)
    names = [models] if isinstance(models, str) else list(models)
    for m in names:
        if m not in MODEL_NAMES:
            raise ValueError(f"unknown model {m!r}; expected one of {sorted(MODEL_NAMES)} or a mapping of factories")
        if MODEL_NAMES[m][1] and encoder is None:
            raise ValueError(f"model {m!r} needs a pretrained encoder: pass checkpoint=")
    return names


def _evaluate_splits(
    task: str,
    kind: str,
    samples: pd.DataFrame,
    inputs: ModelInputs,
    splits: pd.DataFrame,
    models: dict[str, Callable[[], BinaryModel]] | list[str],
    *,
    encoder: nn.Module | None,
    seed: int | None,
    device: str | torch.device | None,
    smoke: bool,
    progress: Any = None,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    y = samples["label"].to_numpy()
    groups = samples["participant"].to_numpy()
    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    names = list(models) if isinstance(models, dict) else models
    for fold in iter_folds(splits, samples["sample_id"].to_numpy()):
        train_in, test_in = inputs.take(fold.train), inputs.take(fold.test)
        for name in names:
            if isinstance(models, dict):
                model = models[name]()
            else:
                model = build_model(name, encoder=encoder, seed=_fold_seed(seed, fold.repeat, fold.fold),
                                    device=device, smoke=smoke)
            t0 = time.perf_counter()
            model.fit(train_in, y[fold.train], groups[fold.train])
            score = np.asarray(model.decision_function(test_in), dtype=np.float64)
            elapsed = time.perf_counter() - t0
            metrics = compute_metrics(y[fold.test], score, threshold=0.0)
            base = {"task": task, "kind": kind, "model": name, "protocol": fold.protocol, "repeat": fold.repeat,
                    "fold": fold.fold, "fold_name": fold.fold_name, "n_train": len(fold.train),
                    "n_test": len(fold.test), "n_test_patients": int(y[fold.test].sum()),
                    "fit_seconds": round(elapsed, 4)}
            rows += [{**base, "metric": m, "value": metrics[m]} for m in METRICS]
            preds.append(pd.DataFrame({
                "task": task, "kind": kind, "model": name, "protocol": fold.protocol, "repeat": fold.repeat,
                "fold": fold.fold, "sample_id": samples["sample_id"].to_numpy()[fold.test],
                "participant": groups[fold.test], "site": samples["site"].to_numpy()[fold.test],
                "y_true": y[fold.test], "score": score,
            }))
            if progress is not None:
                progress.update(1)
    return rows, preds


def _save_tables(out_dir: Path, tables: Mapping[str, pd.DataFrame]) -> None:
    for stem, df in tables.items():
        with atomic_path(out_dir / f"{stem}.csv") as tmp:
            df.to_csv(tmp, index=False)
        try:
            with atomic_path(out_dir / f"{stem}.parquet") as tmp:
                df.to_parquet(tmp, index=False)
        except ImportError as err:  # pyarrow is a dependency; keep CSV if it is absent
            warnings.warn(f"{stem}.parquet not written ({err})", stacklevel=3)


def _prepared(data: Any, checkpoint: Any, tasks: Sequence[str] | None, device: Any,
              seed: int | None, cache_dir: Any) -> BenchmarkData:
    if isinstance(data, BenchmarkData):
        if checkpoint is not None:
            raise ValueError("pass checkpoint= to prepare_benchmark_data, not with prepared BenchmarkData")
        if tasks is not None:
            names = [tasks] if isinstance(tasks, str) else list(tasks)
            unknown = [t for t in names if t not in data.tasks]
            if unknown:
                raise ValueError(f"unknown task(s) {unknown}; prepared tasks are {sorted(data.tasks)}")
            data = BenchmarkData(data.inputs, data.manifest, {t: data.tasks[t] for t in names},
                                 data.encoder, data.identity)
        return data
    return prepare_benchmark_data(data, checkpoint=checkpoint, tasks=tasks, device=device, seed=seed,
                                  cache_dir=cache_dir)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)


def _finish(kind: str, rows: list[dict[str, Any]], preds: list[pd.DataFrame], splits: dict[str, pd.DataFrame],
            config: dict[str, Any], skipped: list[str], out_dir: Path | None) -> BenchmarkResult:
    per_fold = pd.DataFrame(rows)
    if per_fold.empty:
        raise ValueError(f"nothing was evaluated: {'; '.join(skipped) or 'no folds'}")
    summary = summarize(per_fold)
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    if out_dir is not None:
        tables = {f"{kind}_per_fold": per_fold, f"{kind}_summary": summary, f"{kind}_predictions": predictions}
        if kind == "benchmark":
            tables["results"] = summary  # the run folder's headline table (docs/architecture.md)
        _save_tables(out_dir, tables)
        atomic_write_json(out_dir / f"{kind}_config.json", {**config, "skipped": skipped, "evaluation": kind})
    return BenchmarkResult(per_fold, summary, predictions, splits, config, skipped, out_dir)


def run_benchmark(
    data: Any,
    *,
    checkpoint: str | os.PathLike[str] | nn.Module | None = None,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | Mapping[str, Callable[[], BinaryModel]] | None = None,
    protocols: Sequence[str] = ("kfold", "loso"),
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int | None = 0,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
    smoke: bool = False,
    reuse_splits: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> BenchmarkResult:
    """Evaluate models x tasks x protocols on shared, participant-grouped splits.

    Parameters
    ----------
    data : BenchmarkData, path, CuratedDataset or Cohort
        Prepared data (:func:`prepare_benchmark_data`) or a dataset to prepare.
    checkpoint : path or nn.Module, optional
        Only with an unprepared dataset. Without an encoder only the baselines run.
    tasks : sequence of str, optional
        Default: every task of the data.
    models : sequence of str or mapping of name to factory, optional
        Names from :data:`bmlib.evaluation.models.MODEL_NAMES` (default: all that the data
        allow) or ``{name: callable() -> BinaryModel}``.
    protocols : sequence of {"kfold", "loso"}, default=("kfold", "loso")
        Repeated stratified group k-fold and leave-one-site-out. LOSO is skipped (and listed
        in ``skipped``) for single-site tasks.
    n_splits : int, default=5
    n_repeats : int, default=1
    seed : int or None, default=0
        Seeds the splits and every model (a per-fold seed drawn from ``(seed, repeat, fold)``).
    out_dir : path, optional
        ``<run>/evaluation``: split files (reused when settings and samples match),
        ``benchmark_{per_fold,summary,predictions}`` as CSV and Parquet, ``results.csv``,
        ``benchmark_config.json``.
    device : str or torch.device, default="cpu"
        For fine-tuning, BrainNetCNN and feature extraction.
    smoke : bool, default=False
        Small grids and few epochs (a quick end-to-end check, not a result).
    reuse_splits : bool, default=True
    cache_dir : path, optional
        Feature cache when ``data`` is not prepared.
    progress : bool, default=False
        A tqdm progress bar over model fits.

    Returns
    -------
    BenchmarkResult
    """
    bad = [p for p in protocols if p not in ("kfold", "loso")]
    if bad or not protocols:
        raise ValueError(f"expected protocols among ('kfold', 'loso'), got {list(protocols)}")
    data = _prepared(data, checkpoint, tasks, device, seed, cache_dir)
    model_spec = _resolve_models(models, data.encoder)
    out = None if out_dir is None else Path(out_dir)
    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    splits_by: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    plans = []
    for task, spec in data.tasks.items():
        samples, inputs = data.task_inputs(task)
        for protocol in protocols:
            if protocol == "loso" and samples["site"].nunique() < 2:
                skipped.append(f"{task}/loso: a single site")
                continue
            if protocol == "kfold":
                params = {"n_splits": n_splits, "n_repeats": n_repeats, "seed": seed}
                builder = lambda s=samples, p=params: kfold_splits(s, **p)  # noqa: E731
            else:
                params = {}
                builder = lambda s=samples: loso_splits(s)  # noqa: E731
            splits = _task_splits(samples, task, protocol, params, builder, out, reuse_splits)
            splits_by[f"{task}/{protocol}"] = splits
            plans.append((task, str(spec.get("kind", "internal")), samples, inputs, splits))
    n_fits = sum(len(s.groupby(["protocol", "repeat", "fold"])) for *_, s in plans) * len(model_spec)
    bar = _progress(n_fits, progress, "benchmark")
    for task, kind, samples, inputs, splits in plans:
        r, p = _evaluate_splits(task, kind, samples, inputs, splits, model_spec, encoder=data.encoder,
                                seed=seed, device=device, smoke=smoke, progress=bar)
        rows += r
        preds += p
        log.info("benchmark: task %s done (%d fold x model fits)", task, len(p))
    if bar is not None:
        bar.close()
    config = {"tasks": list(data.tasks), "models": list(model_spec), "protocols": list(protocols),
              "n_splits": n_splits, "n_repeats": n_repeats, "seed": seed, "smoke": smoke,
              "identity": data.identity}
    return _finish("benchmark", rows, preds, splits_by, config, skipped, out)


def run_few_shot(
    data: Any,
    *,
    checkpoint: str | os.PathLike[str] | nn.Module | None = None,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | Mapping[str, Callable[[], BinaryModel]] | None = None,
    ks: Iterable[int] = (1, 2, 4, 8, 16, 32),
    n_draws: int = 10,
    test_fraction: float = 0.3,
    seed: int | None = 0,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
    smoke: bool = False,
    reuse_splits: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> BenchmarkResult:
    """Few-shot learning curves: k labelled participants per class, many draws, fixed test set.

    Parameters are those of :func:`run_benchmark`, plus ``ks`` (labelled participants per
    class), ``n_draws`` (random draws per k) and ``test_fraction`` (size of the fixed held-out
    set, see :func:`bmlib.evaluation.splits.few_shot_splits`). k values that the training pool
    cannot supply are listed in ``skipped``. With k = 1 there is no inner CV (default
    hyperparameters) and no early stopping (fixed epochs).

    Returns
    -------
    BenchmarkResult
        ``per_fold`` has one row per task x model x k x draw x metric (``k`` column,
        ``repeat`` = draw); ``summary`` is per k.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    data = _prepared(data, checkpoint, tasks, device, seed, cache_dir)
    model_spec = _resolve_models(models, data.encoder)
    out = None if out_dir is None else Path(out_dir)
    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    splits_by: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    for task, spec in data.tasks.items():
        samples, inputs = data.task_inputs(task)
        params = {"ks": list(ks), "n_draws": n_draws, "test_fraction": test_fraction, "seed": seed}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            splits = _task_splits(samples, task, "fewshot", params,
                                  lambda s=samples, p=params: few_shot_splits(s, **p), out, reuse_splits)
        for w in caught:  # keep the warnings visible, and record the skipped k in the result
            if "skipped" in str(w.message):
                skipped.append(f"{task}/fewshot: {w.message}")
            warnings.warn(w.message, w.category, stacklevel=2)
        splits_by[f"{task}/fewshot"] = splits
        n_fits = splits.groupby(["repeat", "fold"]).ngroups * len(model_spec)
        bar = _progress(n_fits, progress, f"few-shot {task}")
        r, p = _evaluate_splits(task, str(spec.get("kind", "internal")), samples, inputs, splits, model_spec,
                                encoder=data.encoder, seed=seed, device=device, smoke=smoke, progress=bar)
        if bar is not None:
            bar.close()
        rows += [{**row, "k": row["fold"]} for row in r]
        preds += [df.assign(k=df["fold"]) for df in p]
    config = {"tasks": list(data.tasks), "models": list(model_spec), "ks": list(ks), "n_draws": n_draws,
              "test_fraction": test_fraction, "seed": seed, "smoke": smoke, "identity": data.identity}
    return _finish("few_shot", rows, preds, splits_by, config, skipped, out)


def run_zero_shot(
    data: Any,
    *,
    checkpoint: str | os.PathLike[str] | nn.Module | None = None,
    tasks: Sequence[str] | None = None,
    representations: Sequence[str] | None = None,
    methods: Sequence[str] = NORMATIVE_METHODS,
    n_repeats: int = 5,
    test_fraction: float = 0.3,
    n_components: int = 20,
    n_neighbors: int = 5,
    seed: int | None = 0,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
    reuse_splits: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> BenchmarkResult:
    """Zero-shot screening with a normative model of controls (no patient labels).

    Parameters
    ----------
    data, checkpoint, tasks, seed, out_dir, device, reuse_splits, cache_dir
        As in :func:`run_benchmark`.
    representations : sequence of str, optional
        Keys of :data:`ZERO_SHOT_REPRESENTATIONS`: ``"pretrained"`` (latent space of the
        pretrained encoder), ``"random"`` (frozen random-init encoder), ``"fc"`` (raw FC upper
        triangle). Default: all that the data allow.
    methods : sequence of {"mahalanobis", "knn"}
    n_repeats : int, default=5
        Control hold-outs (:func:`bmlib.evaluation.splits.zero_shot_splits`).
    test_fraction : float, default=0.3
    n_components, n_neighbors : int
        :class:`~bmlib.evaluation.zeroshot.NormativeModel` settings.

    Returns
    -------
    BenchmarkResult
        ``model`` = ``"<method>:<representation>"`` plus ``representation`` and ``method``
        columns; metrics are those of :func:`compute_metrics` with the threshold at the 95th
        percentile of the training controls' scores (ROC AUC is threshold-free).
    """
    data = _prepared(data, checkpoint, tasks, device, seed, cache_dir)
    if representations is None:
        representations = [r for r in ZERO_SHOT_REPRESENTATIONS if r == "fc" or data.encoder is not None]
    for r in representations:
        if r not in ZERO_SHOT_REPRESENTATIONS:
            raise ValueError(f"unknown representation {r!r}; expected one of {sorted(ZERO_SHOT_REPRESENTATIONS)}")
        if r != "fc" and data.encoder is None:
            raise ValueError(f"representation {r!r} needs a pretrained encoder: pass checkpoint=")
    for m in methods:
        if m not in NORMATIVE_METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {NORMATIVE_METHODS}")
    out = None if out_dir is None else Path(out_dir)
    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    splits_by: dict[str, pd.DataFrame] = {}
    for task, spec in data.tasks.items():
        kind = str(spec.get("kind", "internal"))
        samples, inputs = data.task_inputs(task)
        params = {"n_repeats": n_repeats, "test_fraction": test_fraction, "seed": seed}
        splits = _task_splits(samples, task, "zeroshot", params,
                              lambda s=samples, p=params: zero_shot_splits(s, **p), out, reuse_splits)
        splits_by[f"{task}/zeroshot"] = splits
        y = samples["label"].to_numpy()
        for fold in iter_folds(splits, samples["sample_id"].to_numpy()):
            for rep in representations:
                X = np.asarray(inputs.get(ZERO_SHOT_REPRESENTATIONS[rep]))
                for method in methods:
                    t0 = time.perf_counter()
                    nm = NormativeModel(method, n_components=n_components, n_neighbors=n_neighbors,
                                        seed=_fold_seed(seed, fold.repeat)).fit(X[fold.train])
                    score = nm.score(X[fold.test])
                    metrics = compute_metrics(y[fold.test], score, threshold=nm.threshold_)
                    name = f"{method}:{rep}"
                    base = {"task": task, "kind": kind, "model": name, "representation": rep, "method": method,
                            "protocol": "zeroshot", "repeat": fold.repeat, "fold": fold.fold,
                            "fold_name": fold.fold_name, "n_train": len(fold.train), "n_test": len(fold.test),
                            "n_test_patients": int(y[fold.test].sum()),
                            "fit_seconds": round(time.perf_counter() - t0, 4)}
                    rows += [{**base, "metric": m, "value": metrics[m]} for m in METRICS]
                    preds.append(pd.DataFrame({
                        "task": task, "kind": kind, "model": name, "protocol": "zeroshot", "repeat": fold.repeat,
                        "fold": fold.fold, "sample_id": samples["sample_id"].to_numpy()[fold.test],
                        "participant": samples["participant"].to_numpy()[fold.test],
                        "site": samples["site"].to_numpy()[fold.test], "y_true": y[fold.test], "score": score,
                    }))
    config = {"tasks": list(data.tasks), "representations": list(representations), "methods": list(methods),
              "n_repeats": n_repeats, "test_fraction": test_fraction, "n_components": n_components,
              "n_neighbors": n_neighbors, "seed": seed, "identity": data.identity}
    return _finish("zero_shot", rows, preds, splits_by, config, [], out)


def headline_metrics(
    benchmark: BenchmarkResult | None = None,
    few_shot: BenchmarkResult | None = None,
    zero_shot: BenchmarkResult | None = None,
    *,
    metrics: Sequence[str] = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity"),
) -> dict[str, Any]:
    """Nested dict of mean and 95% CI for the notebook's ``metrics.json``.

    Layout: ``benchmark[task][protocol][model][metric] = {"mean", "ci_low", "ci_high", "n"}``,
    ``few_shot[task][model][k][metric]``, ``zero_shot[task][model][metric]``.
    """
    def nest(summary: pd.DataFrame, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        s = summary[summary["metric"].isin(list(metrics))]
        for rec in s.to_dict("records"):
            node = out
            for k in keys:
                node = node.setdefault(str(rec[k]), {})
            node[rec["metric"]] = {
                "mean": None if pd.isna(rec["mean"]) else float(rec["mean"]),
                "ci_low": None if pd.isna(rec["ci_low"]) else float(rec["ci_low"]),
                "ci_high": None if pd.isna(rec["ci_high"]) else float(rec["ci_high"]),
                "n": int(rec["n"]),
            }
        return out

    result: dict[str, Any] = {}
    if benchmark is not None:
        result["benchmark"] = nest(benchmark.summary, ("task", "protocol", "model"))
    if few_shot is not None:
        result["few_shot"] = nest(few_shot.summary, ("task", "model", "k"))
    if zero_shot is not None:
        result["zero_shot"] = nest(zero_shot.summary, ("task", "model"))
    return result


def write_metrics(
    path: str | os.PathLike[str],
    benchmark: BenchmarkResult | None = None,
    few_shot: BenchmarkResult | None = None,
    zero_shot: BenchmarkResult | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write :func:`headline_metrics` (plus ``extra`` entries) atomically as JSON; returns the dict."""
    payload = {**headline_metrics(benchmark, few_shot, zero_shot), **extra}
    atomic_write_json(path, payload)
    return payload
