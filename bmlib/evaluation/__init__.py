"""Evaluation of frozen and fine-tuned brain-network encoders against baselines.

Sub-modules
-----------
splits
    Participant-grouped k-fold (stratified by diagnosis x site), leave-one-site-out, few-shot and
    zero-shot split tables, saved to and reloaded from CSV, checked for leakage.
metrics
    :func:`compute_metrics` (patients = positive class) and :func:`summarize` (mean, std, 95% CI).
models
    One interface (``fit(inputs, y, groups)`` / ``decision_function``) for the linear probe,
    RBF SVM, fine-tuning, the from-scratch encoder, the frozen random encoder, FC and tangent
    baselines and BrainNetCNN.
zeroshot
    Normative model of controls (Mahalanobis / kNN distance).
identification
    Session-to-session participant identification (Finn et al. 2015 fingerprinting) from
    embeddings or FC: :func:`identification_accuracy`, :func:`identification_table`.
embeddings
    What embeddings encode: :func:`project_embeddings` (PCA / t-SNE table) and
    :func:`site_decoding` (cross-validated site prediction versus chance).
benchmark
    :func:`prepare_benchmark_data`, :func:`run_benchmark`, :func:`run_few_shot`,
    :func:`run_zero_shot`, :func:`write_metrics`.
plots
    :func:`plot_results`, :func:`plot_roc_curves`, :func:`plot_few_shot`, :func:`plot_zero_shot`.
"""

from __future__ import annotations

from bmlib.evaluation.benchmark import (
    ZERO_SHOT_REPRESENTATIONS,
    BenchmarkData,
    BenchmarkResult,
    Cohort,
    headline_metrics,
    prepare_benchmark_data,
    run_benchmark,
    run_few_shot,
    run_zero_shot,
    task_samples,
    write_metrics,
)
from bmlib.evaluation.compare import PRETRAINED_MODELS, model_matrix, pretraining_vs_baselines
from bmlib.evaluation.embeddings import (
    PROJECTION_COLUMNS,
    SiteDecoding,
    project_embeddings,
    site_decoding,
    site_decoding_table,
)
from bmlib.evaluation.identification import (
    IdentificationResult,
    identification_accuracy,
    identification_table,
    similarity_matrix,
)
from bmlib.evaluation.metrics import METRICS, compute_metrics, format_ci, summarize
from bmlib.evaluation.models import (
    MODEL_NAMES,
    BinaryModel,
    BrainNetCNN,
    BrainNetCNNModel,
    FineTuneModel,
    ModelInputs,
    SklearnModel,
    TorchModel,
    build_model,
    inner_cv,
)
from bmlib.evaluation.plots import plot_few_shot, plot_results, plot_roc_curves, plot_zero_shot
from bmlib.evaluation.splits import (
    Fold,
    LeakageError,
    check_splits,
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

__all__ = [
    "model_matrix",
    "pretraining_vs_baselines",
    "site_decoding_table",
    "METRICS",
    "MODEL_NAMES",
    "NORMATIVE_METHODS",
    "PRETRAINED_MODELS",
    "PROJECTION_COLUMNS",
    "ZERO_SHOT_REPRESENTATIONS",
    "BenchmarkData",
    "BenchmarkResult",
    "BinaryModel",
    "BrainNetCNN",
    "BrainNetCNNModel",
    "Cohort",
    "FineTuneModel",
    "Fold",
    "IdentificationResult",
    "LeakageError",
    "ModelInputs",
    "NormativeModel",
    "SiteDecoding",
    "SklearnModel",
    "TorchModel",
    "build_model",
    "check_splits",
    "compute_metrics",
    "few_shot_splits",
    "format_ci",
    "headline_metrics",
    "identification_accuracy",
    "identification_table",
    "inner_cv",
    "iter_folds",
    "kfold_splits",
    "load_splits",
    "loso_splits",
    "plot_few_shot",
    "plot_results",
    "plot_roc_curves",
    "plot_zero_shot",
    "prepare_benchmark_data",
    "project_embeddings",
    "run_benchmark",
    "run_few_shot",
    "run_zero_shot",
    "save_splits",
    "similarity_matrix",
    "site_decoding",
    "summarize",
    "task_samples",
    "validate_samples",
    "write_metrics",
    "zero_shot_splits",
]
