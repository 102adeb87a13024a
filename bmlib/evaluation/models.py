"""Classifiers compared on the same folds, behind one small interface.

Every model is a :class:`BinaryModel`:

- ``fit(inputs, y, groups) -> self`` on the training part only (``groups`` = participants);
- ``decision_function(inputs) -> (n,)`` real scores, **threshold 0** (logits / SVM margins),
  higher = patient.

``inputs`` is a :class:`ModelInputs` bundle (FC matrices, time series and precomputed frozen
features for the same samples) sliced per fold with :meth:`ModelInputs.take`, so the benchmark
loop is the same for every model. Hyperparameters are chosen by an inner cross-validation on the
training part (participant-grouped, stratified); scaling, PCA and tangent-space projection sit
inside a scikit-learn ``Pipeline`` and are therefore fitted inside each (inner and outer)
training fold. Torch models (fine-tuning, from-scratch encoder, BrainNetCNN) early-stop on an
inner validation split grouped by participant, seeded.
"""

from __future__ import annotations

import abc
import copy
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn
from torch.nn import functional as F

from bmlib.features import random_init_like, resolve_device

__all__ = [
    "MODEL_NAMES",
    "BinaryModel",
    "BrainNetCNN",
    "BrainNetCNNModel",
    "FineTuneModel",
    "ModelInputs",
    "SklearnModel",
    "TorchModel",
    "build_model",
    "inner_cv",
]


@dataclass(frozen=True)
class ModelInputs:
    """What models may consume, for the same N samples in the same order.

    Attributes
    ----------
    sample_ids : ndarray of str, shape (N,)
    fc : ndarray of float32, shape (N, R, R), or None
        Full-length FC (no augmentation).
    series : tuple of ndarray (T_i, R), or None
        Time series (lengths may differ); needed by the tangent-space baseline.
    features : mapping of str to ndarray (N, P)
        Frozen features, e.g. ``"pretrained"`` and ``"random"`` pooled embeddings.
    """

    sample_ids: np.ndarray
    fc: np.ndarray | None = None
    series: tuple[np.ndarray, ...] | None = None
    features: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.sample_ids)
        if self.fc is not None and (self.fc.ndim != 3 or self.fc.shape[0] != n or self.fc.shape[1] != self.fc.shape[2]):
            raise ValueError(f"expected fc of shape ({n}, R, R), got {self.fc.shape}")
        if self.series is not None and len(self.series) != n:
            raise ValueError(f"expected {n} time series, got {len(self.series)}")
        for name, arr in self.features.items():
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"expected features[{name!r}] of shape ({n}, P), got {arr.shape}")

    def __len__(self) -> int:
        return len(self.sample_ids)

    def take(self, idx: np.ndarray | Sequence[int]) -> ModelInputs:
        """The subset at positions ``idx`` (same order)."""
        idx = np.asarray(idx, dtype=np.int64)
        return ModelInputs(
            sample_ids=np.asarray(self.sample_ids)[idx],
            fc=None if self.fc is None else self.fc[idx],
            series=None if self.series is None else tuple(self.series[i] for i in idx),
            features={k: v[idx] for k, v in self.features.items()},
        )

    def get(self, kind: str) -> Any:
        """The model input named ``kind``.

        ``"fc"`` -> (N, R, R); ``"fc_vector"`` -> upper triangle without the diagonal,
        (N, R(R-1)/2); ``"series"`` -> list of (T_i, R); ``"features:<name>"`` -> (N, P).
        """
        if kind in ("fc", "fc_vector"):
            if self.fc is None:
                raise ValueError(f"this model needs FC ({kind!r}) but the inputs carry none")
            if kind == "fc":
                return self.fc
            iu = np.triu_indices(self.fc.shape[1], k=1)
            return self.fc[:, iu[0], iu[1]]
        if kind == "series":
            if self.series is None:
                raise ValueError("this model needs time series but the inputs carry none")
            return list(self.series)
        if kind.startswith("features:"):
            name = kind.split(":", 1)[1]
            if name not in self.features:
                raise ValueError(f"this model needs features {name!r}; the inputs have {sorted(self.features)}")
            return self.features[name]
        raise ValueError(f"unknown input kind {kind!r}; expected fc, fc_vector, series or features:<name>")


def _check_fit_args(inputs: ModelInputs, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(inputs, ModelInputs):
        raise TypeError(f"expected ModelInputs, got {type(inputs).__name__}")
    y = np.asarray(y)
    groups = np.asarray(groups)
    if y.shape != (len(inputs),) or groups.shape != (len(inputs),):
        raise ValueError(f"expected y and groups of shape ({len(inputs)},), got {y.shape} and {groups.shape}")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError(f"expected both classes 0 and 1 in the training labels, got {np.unique(y).tolist()}")
    return y.astype(np.int64), groups


def inner_cv(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int | None) -> StratifiedGroupKFold | None:
    """Participant-grouped stratified inner CV, or None when a class has < 2 participants.

    The number of folds is ``min(n_splits, participants of the smaller class)``.
    """
    per_class = [len(np.unique(groups[y == c])) for c in (0, 1)]
    k = min(n_splits, *per_class)
    if k < 2:
        return None
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)


class BinaryModel(abc.ABC):
    """Interface of every compared model (see module docstring)."""

    #: Which :meth:`ModelInputs.get` kind the model consumes.
    input_kind: str = "fc"

    @abc.abstractmethod
    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray) -> BinaryModel:
        """Fit on the training part. ``y`` (n,) in {0, 1}; ``groups`` (n,) participants."""

    @abc.abstractmethod
    def decision_function(self, inputs: ModelInputs) -> np.ndarray:
        """Scores (n,), threshold 0, higher = patient."""


class SklearnModel(BinaryModel):
    """A scikit-learn pipeline ``[preprocess...] -> StandardScaler -> [PCA] -> clf`` with inner-CV tuning.

    Parameters
    ----------
    input_kind : str
        ``"fc_vector"``, ``"series"`` or ``"features:<name>"`` (see :meth:`ModelInputs.get`).
    estimator : sklearn classifier
        Cloned for every fit; its step name is ``"clf"``.
    param_grid : mapping, optional
        Grid over pipeline parameters (``"clf__C"``...). Searched by :class:`GridSearchCV` with
        :func:`inner_cv` on the **training part only**, scoring ``scoring``. When a class has
        fewer than 2 participants (few-shot k=1) the estimator's own defaults are used.
    preprocess : sequence of (name, transformer), optional
        Steps before scaling (e.g. tangent-space projection); cached across the grid.
    scale : bool, default=True
    pca : int or float, optional
        PCA components (int) or explained-variance fraction (float), fitted in the fold; an int
        is clipped to what the training part allows.
    inner_splits : int, default=3
    scoring : str, default="roc_auc"
    seed : int or None, default=0
    """

    def __init__(
        self,
        input_kind: str,
        estimator: BaseEstimator,
        param_grid: Mapping[str, Sequence[Any]] | None = None,
        *,
        preprocess: Sequence[tuple[str, BaseEstimator]] = (),
        scale: bool = True,
        pca: int | float | None = None,
        inner_splits: int = 3,
        scoring: str = "roc_auc",
        seed: int | None = 0,
    ) -> None:
        self.input_kind = input_kind
        self.estimator = estimator
        self.param_grid = dict(param_grid or {})
        self.preprocess = list(preprocess)
        self.scale = scale
        self.pca = pca
        self.inner_splits = inner_splits
        self.scoring = scoring
        self.seed = seed

    def _pipeline(self, n_train: int, memory: str | None) -> Pipeline:
        steps: list[tuple[str, Any]] = [(name, clone(step)) for name, step in self.preprocess]
        if self.scale:
            steps.append(("scale", StandardScaler()))
        if self.pca is not None:
            n_comp = self.pca if isinstance(self.pca, float) else max(1, min(int(self.pca), n_train // 2))
            steps.append(("pca", PCA(n_components=n_comp, random_state=self.seed)))
        steps.append(("clf", clone(self.estimator)))
        return Pipeline(steps, memory=memory)

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray) -> SklearnModel:
        y, groups = _check_fit_args(inputs, y, groups)
        X = inputs.get(self.input_kind)
        cv = inner_cv(y, groups, self.inner_splits, self.seed)
        cache = tempfile.mkdtemp(prefix="bmlib-pipe-") if self.preprocess and cv is not None else None
        try:
            pipe = self._pipeline(len(y), cache)
            if cv is None or not self.param_grid:
                self.search_ = None
                self.pipeline_ = pipe.fit(X, y)
                self.best_params_: dict[str, Any] = {}
            else:
                self.search_ = GridSearchCV(pipe, self.param_grid, scoring=self.scoring, cv=cv, refit=True,
                                            n_jobs=1, error_score="raise")
                self.search_.fit(X, y, groups=groups)
                self.pipeline_ = self.search_.best_estimator_
                self.best_params_ = dict(self.search_.best_params_)
            self.pipeline_.set_params(memory=None)
        finally:
            if cache is not None:
                shutil.rmtree(cache, ignore_errors=True)
        return self

    def decision_function(self, inputs: ModelInputs) -> np.ndarray:
        if not hasattr(self, "pipeline_"):
            raise RuntimeError("call fit() before decision_function()")
        X = inputs.get(self.input_kind)
        pipe = self.pipeline_
        if hasattr(pipe, "decision_function"):
            return np.asarray(pipe.decision_function(X), dtype=np.float64)
        proba = pipe.predict_proba(X)[:, 1]
        return np.log(np.clip(proba, 1e-12, 1)) - np.log(np.clip(1 - proba, 1e-12, 1))


# ----------------------------------------------------------------------------------- torch models


class TorchModel(BinaryModel):
    """Shared training loop of the torch classifiers (input: FC (N, R, R), output: one logit).

    Weighted binary cross-entropy (``pos_weight`` = controls / patients of the training part),
    AdamW, mini-batches shuffled by a seeded generator. Early stopping on the validation loss of
    an inner split (``1/val_fraction`` participant-grouped stratified folds, the first one is the
    validation part); the best weights are restored. Without 2 participants per class there is no
    validation split and the model trains ``epochs`` epochs. ``history_`` records the losses.

    Parameters
    ----------
    epochs, lr, weight_decay, batch_size, patience, val_fraction, seed, device
        Training settings (``device="auto"`` picks CUDA when available).
    """

    input_kind = "fc"

    def __init__(
        self,
        *,
        epochs: int = 50,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 32,
        patience: int = 8,
        val_fraction: float = 0.2,
        seed: int | None = 0,
        device: str | torch.device | None = "cpu",
    ) -> None:
        if epochs < 1:
            raise ValueError(f"expected epochs >= 1, got {epochs}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"expected 0 <= val_fraction < 1, got {val_fraction}")
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device

    @abc.abstractmethod
    def _build(self, n_rois: int) -> nn.Module:
        """A module mapping FC (B, R, R) to logits (B,)."""

    def _param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": self.lr}]

    def _validation_split(self, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        all_idx = np.arange(len(y))
        if self.val_fraction == 0:
            return all_idx, None
        n_splits = max(2, int(round(1 / self.val_fraction)))
        cv = inner_cv(y, groups, n_splits, self.seed)
        if cv is None:
            return all_idx, None
        train, val = next(cv.split(np.zeros(len(y)), y, groups))
        if len(np.unique(y[train])) < 2:
            return all_idx, None
        return train, val

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray) -> TorchModel:
        y, groups = _check_fit_args(inputs, y, groups)
        fc = torch.as_tensor(np.asarray(inputs.get("fc"), dtype=np.float32))
        dev = resolve_device(self.device)
        # initialisation and dropout draw from torch's RNG: seed a forked copy, leave the global one alone
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            return self._fit(fc, y, groups, dev)

    def _fit(self, fc: torch.Tensor, y: np.ndarray, groups: np.ndarray, dev: torch.device) -> TorchModel:
        module = self._build(fc.shape[1]).to(dev)
        train_idx, val_idx = self._validation_split(y, groups)
        fc = fc.to(dev)
        yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
        n_pos = float(y[train_idx].sum())
        pos_weight = torch.tensor((len(train_idx) - n_pos) / max(n_pos, 1.0), device=dev)
        opt = torch.optim.AdamW(self._param_groups(module), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
        train_t = torch.as_tensor(train_idx)
        best = (float("inf"), None, 0)
        history = []
        bad_epochs = 0
        for epoch in range(self.epochs):
            module.train()
            order = train_t[torch.randperm(len(train_t), generator=gen)]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size].to(dev)
                loss = F.binary_cross_entropy_with_logits(module(fc[idx]), yt[idx], pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            row = {"epoch": epoch, "train_loss": total / len(order), "val_loss": float("nan")}
            if val_idx is not None:
                logits = self._logits(module, fc[torch.as_tensor(val_idx, device=dev)])
                row["val_loss"] = float(F.binary_cross_entropy_with_logits(
                    logits, yt[torch.as_tensor(val_idx, device=dev)], pos_weight=pos_weight))
                if row["val_loss"] < best[0] - 1e-4:
                    best = (row["val_loss"], copy.deepcopy(module.state_dict()), epoch)
                    bad_epochs = 0
                else:
                    bad_epochs += 1
            history.append(row)
            if val_idx is not None and bad_epochs >= self.patience:
                break
        if best[1] is not None:
            module.load_state_dict(best[1])
        self.best_epoch_ = best[2] if best[1] is not None else len(history) - 1
        self.history_ = history
        self.module_ = module.eval()
        return self

    def _logits(self, module: nn.Module, fc: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        module.eval()
        with torch.no_grad():
            return torch.cat([module(fc[i : i + batch_size]) for i in range(0, fc.shape[0], batch_size)])

    def decision_function(self, inputs: ModelInputs) -> np.ndarray:
        if not hasattr(self, "module_"):
            raise RuntimeError("call fit() before decision_function()")
        dev = next(self.module_.parameters()).device
        fc = torch.as_tensor(np.asarray(inputs.get("fc"), dtype=np.float32), device=dev)
        return self._logits(self.module_, fc).double().cpu().numpy()


class _EncoderClassifier(nn.Module):
    """Encoder + linear head on the pooled embedding: FC (B, R, R) -> logits (B,)."""

    def __init__(self, encoder: nn.Module, pooled_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(pooled_dim, 1)

    def forward(self, fc: torch.Tensor) -> torch.Tensor:
        out = self.encoder(fc)
        pooled = out["pooled"] if isinstance(out, Mapping) else out.pooled  # (B, P)
        return self.head(pooled).squeeze(-1)  # (B,)


def _encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    for name in ("blocks", "layers"):
        mod = getattr(encoder, name, None)
        if isinstance(mod, nn.ModuleList):
            return mod
    for mod in encoder.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            return mod
    raise TypeError(f"cannot find the transformer blocks (a ModuleList) of {type(encoder).__name__}")


class FineTuneModel(TorchModel):
    """Fine-tuning of an encoder + linear head (or training it from scratch).

    Parameters
    ----------
    encoder : nn.Module
        The pretrained encoder; deep-copied for every fit (the original is never modified).
    pretrained : bool, default=True
        False: the same architecture re-initialised (:func:`bmlib.features.random_init_like`,
        seeded) and trained from scratch — the "no pretraining" baseline.
    train_blocks : int, optional
        None: the whole encoder is trained. n: only the last n transformer blocks, the
        parameters that come after them (final norm, readout) and the head.
    head_lr : float, optional
        Learning rate of the head (default ``10 * lr``).
    **kwargs
        :class:`TorchModel` settings (defaults here: 30 epochs, lr 1e-4, patience 5).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        pretrained: bool = True,
        train_blocks: int | None = None,
        head_lr: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("epochs", 30)
        kwargs.setdefault("lr", 1e-4)
        kwargs.setdefault("patience", 5)
        super().__init__(**kwargs)
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"expected a torch nn.Module encoder, got {type(encoder).__name__}")
        if train_blocks is not None and train_blocks < 1:
            raise ValueError(f"expected train_blocks >= 1 or None, got {train_blocks}")
        self.encoder = encoder
        self.pretrained = pretrained
        self.train_blocks = train_blocks
        self.head_lr = head_lr

    def _build(self, n_rois: int) -> nn.Module:
        if self.pretrained:
            enc = copy.deepcopy(self.encoder).cpu()
        else:
            enc = random_init_like(self.encoder, self.seed)
        enc.eval()
        with torch.no_grad():  # one dummy pass to learn the pooled width
            probe = enc(torch.eye(n_rois).unsqueeze(0))  # (1, R, R)
            pooled = probe["pooled"] if isinstance(probe, Mapping) else probe.pooled  # (1, P)
        if self.train_blocks is not None:
            blocks = _encoder_blocks(enc)
            if self.train_blocks > len(blocks):
                raise ValueError(f"train_blocks={self.train_blocks} but the encoder has {len(blocks)} blocks")
            first = blocks[len(blocks) - self.train_blocks]
            first_param = next(first.parameters())
            start = next(i for i, (_, p) in enumerate(enc.named_parameters()) if p is first_param)
            block_ids = {id(p) for p in blocks.parameters()}
            trainable = {id(p) for b in blocks[len(blocks) - self.train_blocks:] for p in b.parameters()}
            # parameters registered after the first trained block and outside the block list: norm, readout
            trainable |= {id(p) for i, (_, p) in enumerate(enc.named_parameters())
                          if i > start and id(p) not in block_ids}
            for p in enc.parameters():
                p.requires_grad_(id(p) in trainable)
            self.trainable_ = [n for n, p in enc.named_parameters() if p.requires_grad]
        return _EncoderClassifier(enc, int(pooled.shape[-1]))

    def _param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        enc = [p for p in module.encoder.parameters() if p.requires_grad]
        head_lr = self.head_lr if self.head_lr is not None else 10 * self.lr
        groups = [{"params": list(module.head.parameters()), "lr": head_lr}]
        if enc:
            groups.insert(0, {"params": enc, "lr": self.lr})
        return groups


class _LineFilter(nn.Module):
    """A (1, R) or (R, 1) convolution over FC channels, written as one einsum.

    ``axis=-1`` (the E2N filter) sums over columns: ``out[b, f, i] = sum_{c,j} W[f, c, j] x[b, c, i, j]``;
    ``axis=-2`` sums over rows. Same parameters and initialisation as the equivalent ``nn.Conv2d``
    (much faster on CPU than a convolution whose kernel spans the whole image).
    """

    def __init__(self, in_channels: int, out_channels: int, n_rois: int, axis: int) -> None:
        super().__init__()
        if axis not in (-1, -2):
            raise ValueError(f"expected axis -1 (columns) or -2 (rows), got {axis}")
        self.axis = axis
        conv = nn.Conv2d(in_channels, out_channels, (1, n_rois))  # for its default initialisation
        self.weight = nn.Parameter(conv.weight.detach().reshape(out_channels, in_channels, n_rois).clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eq = "bcij,fcj->bfi" if self.axis == -1 else "bcij,fci->bfj"
        return torch.einsum(eq, x, self.weight) + self.bias[:, None]  # (B, F, R)


class E2EBlock(nn.Module):
    """Edge-to-edge filter (Kawahara et al. 2017), (B, C, R, R) -> (B, F, R, R).

    ``out[b, f, i, j] = row_f(x[b, :, i, :]) + col_f(x[b, :, :, j])``: a (1, R) and an (R, 1)
    filter, broadcast back over the matrix (so edge (i, j) sees only row i and column j).
    """

    def __init__(self, in_channels: int, out_channels: int, n_rois: int) -> None:
        super().__init__()
        self.row = _LineFilter(in_channels, out_channels, n_rois, axis=-1)
        self.col = _LineFilter(in_channels, out_channels, n_rois, axis=-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.row(x)[..., :, None] + self.col(x)[..., None, :]  # (B, F, R, 1) + (B, F, 1, R)


class BrainNetCNN(nn.Module):
    """BrainNetCNN (Kawahara et al., NeuroImage 2017): E2E -> E2N -> N2G -> MLP -> one logit.

    Parameters
    ----------
    n_rois : int
    e2e : sequence of int, default=(16, 16)
        Channels of the edge-to-edge layers.
    e2n : int, default=32
        Channels of the edge-to-node layer (a (1, R) filter).
    n2g : int, default=64
        Channels of the node-to-graph layer (an (R, 1) filter over the node features).
    hidden : int, default=32
    dropout : float, default=0.5
    """

    def __init__(self, n_rois: int, e2e: Sequence[int] = (16, 16), e2n: int = 32, n2g: int = 64,
                 hidden: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        chans = [1, *e2e]
        self.e2e = nn.ModuleList(E2EBlock(a, b, n_rois) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.e2n = _LineFilter(chans[-1], e2n, n_rois, axis=-1)
        self.n2g = nn.Linear(e2n * n_rois, n2g)  # an (R, 1) convolution over (E, R, 1) node features
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(n2g, hidden), nn.LeakyReLU(0.33),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, fc: torch.Tensor) -> torch.Tensor:
        if fc.ndim != 3:
            raise ValueError(f"expected FC of shape (B, R, R), got {tuple(fc.shape)}")
        x = fc.unsqueeze(1)  # (B, 1, R, R)
        for block in self.e2e:
            x = F.leaky_relu(block(x), 0.33)  # (B, F, R, R)
        x = F.leaky_relu(self.e2n(x), 0.33)  # (B, E, R)
        x = F.leaky_relu(self.n2g(x.flatten(1)), 0.33)  # (B, G)
        return self.mlp(x).squeeze(-1)  # (B,)


class BrainNetCNNModel(TorchModel):
    """BrainNetCNN trained from scratch on FC (:class:`TorchModel` training, lr 1e-3, wd 5e-4).

    Parameters
    ----------
    arch : mapping, optional
        Keyword arguments of :class:`BrainNetCNN` (besides ``n_rois``).
    **kwargs
        :class:`TorchModel` settings.
    """

    def __init__(self, arch: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("weight_decay", 5e-4)
        super().__init__(**kwargs)
        self.arch = dict(arch or {})

    def _build(self, n_rois: int) -> nn.Module:
        return BrainNetCNN(n_rois, **self.arch)


# ------------------------------------------------------------------------------------- registry


def _logreg() -> LogisticRegression:
    return LogisticRegression(class_weight="balanced", max_iter=5000)


def _svm() -> SVC:
    return SVC(kernel="rbf", gamma="scale", class_weight="balanced")


def _tangent() -> BaseEstimator:
    from nilearn.connectome import ConnectivityMeasure

    return ConnectivityMeasure(kind="tangent", vectorize=True, discard_diagonal=True, standardize="zscore_sample")


_C_LOGREG = np.logspace(-3, 2, 6).tolist()
_C_SVM = [0.1, 1.0, 10.0, 100.0]

#: name -> (description, needs an encoder)
MODEL_NAMES: dict[str, tuple[str, bool]] = {
    "probe_logreg": ("frozen pretrained encoder, pooled features + logistic regression", True),
    "probe_svm": ("frozen pretrained encoder, pooled features + RBF SVM", True),
    "finetune": ("pretrained encoder + head, fine-tuned end to end", True),
    "finetune_last": ("pretrained encoder, last block + head fine-tuned", True),
    "scratch": ("same encoder architecture trained from scratch (no pretraining)", True),
    "random_probe": ("frozen random-init encoder, pooled features + logistic regression", True),
    "fc_logreg": ("FC upper triangle + logistic regression", False),
    "fc_svm": ("FC upper triangle + RBF SVM", False),
    "tangent_logreg": ("tangent-space FC (fitted in the fold) + logistic regression", False),
    "brainnetcnn": ("BrainNetCNN (E2E/E2N/N2G) trained from scratch", False),
}


def build_model(
    name: str,
    *,
    encoder: nn.Module | None = None,
    seed: int | None = 0,
    device: str | torch.device | None = "cpu",
    smoke: bool = False,
) -> BinaryModel:
    """A fresh, unfitted model by name (see :data:`MODEL_NAMES`).

    Parameters
    ----------
    name : str
    encoder : nn.Module, optional
        Required by the encoder-based models (fine-tuning and from-scratch use a copy).
    seed : int or None, default=0
    device : str or torch.device, default="cpu"
    smoke : bool, default=False
        Fewer epochs and smaller grids, for quick runs.

    Returns
    -------
    BinaryModel
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_NAMES)}")
    if MODEL_NAMES[name][1] and encoder is None:
        raise ValueError(f"model {name!r} needs a pretrained encoder (pass a checkpoint)")
    c_lr = [0.01, 1.0] if smoke else _C_LOGREG
    c_svm = [1.0, 10.0] if smoke else _C_SVM
    torch_kw = dict(seed=seed, device=device)
    if smoke:
        torch_kw.update(epochs=6, patience=3)
    if name == "probe_logreg":
        return SklearnModel("features:pretrained", _logreg(), {"clf__C": c_lr}, seed=seed)
    if name == "probe_svm":
        return SklearnModel("features:pretrained", _svm(), {"clf__C": c_svm}, seed=seed)
    if name == "random_probe":
        return SklearnModel("features:random", _logreg(), {"clf__C": c_lr}, seed=seed)
    if name == "fc_logreg":
        return SklearnModel("fc_vector", _logreg(), {"clf__C": c_lr}, seed=seed)
    if name == "fc_svm":
        return SklearnModel("fc_vector", _svm(), {"clf__C": c_svm}, seed=seed)
    if name == "tangent_logreg":
        return SklearnModel("series", _logreg(), {"clf__C": c_lr}, preprocess=[("tangent", _tangent())], seed=seed)
    if name == "brainnetcnn":
        arch = {"e2e": (8,), "e2n": 16, "n2g": 32, "hidden": 16} if smoke else None
        return BrainNetCNNModel(arch, **torch_kw)
    if name == "finetune":
        return FineTuneModel(encoder, **torch_kw)
    if name == "finetune_last":
        return FineTuneModel(encoder, train_blocks=1, **torch_kw)
    assert name == "scratch"
    return FineTuneModel(encoder, pretrained=False, lr=1e-3, **torch_kw)


#: A zero-argument callable returning a fresh model (for custom models in the benchmark).
ModelFactory = Callable[[], BinaryModel]
