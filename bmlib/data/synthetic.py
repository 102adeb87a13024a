"""Synthetic multi-site cohorts on Schaefer-100 with planted, documented diagnosis effects.

This is the embedded default data of bmlib: a seeded generator of BOLD-like ROI time series
for a pretraining corpus (thousands of unlabelled scans from several "datasets" and sites) and
for labelled diagnosis tasks whose group differences are known exactly. Everything is made
from two shipped tables: the Schaefer-100 (7 networks) atlas and the HCP group-mean FC
(:func:`bmlib.data.atlases.load_reference_fc`).

Generative model
----------------
For participant *p*, session *s*, the **latent** (noise-free) ROI signal ``x`` (T, R) is a
zero-mean Gaussian process with unit variance, spatial correlation ``R_ps`` and AR(1)
temporal autocorrelation::

    R_ps = (C + psi*I + sev_p * F * delta * P  +  a * U_p U_p^T  +  b * V_ps V_ps^T) / F
    F    = 1 + psi + a + b

* ``C``: the HCP group-mean FC made positive definite by eigenvalue clipping
  (:func:`make_positive_definite`, floor ``CohortModel.min_eigenvalue``) and rescaled to a
  unit diagonal.
* ``psi * I``: private (ROI-specific) neural variance, ``CohortModel.private_variance``. It
  scales all latent correlations by ``1/F`` and leaves room for planted effects while keeping
  every covariance positive definite.
* ``U_p`` (R, k): the **individual signature**, drawn once per participant and shared by all
  of their sessions (so participants can be identified across sessions). Loadings are an
  ROI-specific Gaussian plus a network-shared Gaussian (weight
  ``CohortModel.signature_network_weight``), and every row is scaled to unit norm, so the
  diagonal of ``U_p U_p^T`` is exactly 1. Strength ``a = signature_strength``, rank
  ``k = signature_rank``.
* ``V_ps`` (R, k2): a **session state** term, redrawn for every scan (unit-norm rows, strength
  ``b = state_strength``, rank ``state_rank``).
* ``delta * P``: the **planted effect** of a diagnosis task (:class:`PlantedEffect`): ``P`` is
  the 0/1 symmetric pattern of the planted ROI pairs (zero diagonal) and ``delta`` the signed
  change of the expected latent correlation on each of them. Patients carry it with a
  severity ``sev_p = 1 + severity_sd * clip(N(0, 1), -2, 2)`` (mean exactly 1); controls have
  ``sev_p = 0``. Because every term is linear and the diagonal is exact, the expected latent
  correlation of patients minus controls is **exactly** ``delta * P``: this is the ground
  truth ``delta_fc``. Effects that would make the patient covariance indefinite (at the
  largest severity) are refused with a ``ValueError`` that states the largest feasible
  ``|delta|`` for the pattern.

Time: ``x`` is an AR(1) process in time with coefficient ``phi = exp(-TR / tau_p)``; the
participant's timescale ``tau_p`` is drawn from ``CohortModel.timescale_range`` (seconds), so
autocorrelation per *second* is the same across sites with different TRs (lag-1
autocorrelation about 0.7 at TR 0.72 s and 0.3 at TR 2.5 s before noise). The AR recursion
starts in its stationary distribution and applies the same filter to every ROI, so it does
not change the spatial correlation.

Observation at site *q* (:class:`SiteSpec`)::

    y[t, r] = baseline_r + scale_r * (x[t, r] + global_signal * w_q[r] * g[t] + sigma_r * e[t, r])

* ``g``: a site-specific shared "scanner / global signal" component, AR(1) with timescale
  ``CohortModel.global_timescale`` (unit variance), loading
  ``w_q[r] = 1 + gradient * y_r`` with ``y_r`` the ROI's MNI y coordinate scaled to [-1, 1]
  (an anterior-posterior coil-sensitivity gradient). It raises FC between all ROIs, more where
  the loading is large, differently at every site.
* ``e``: white measurement noise, ``sigma_r = noise * m_r`` with ``m_r`` the network noise
  multiplier (``CohortModel.noise_multipliers``; Limbic ROIs, orbitofrontal and temporal pole,
  are noisier, as with susceptibility artefacts). Noise attenuates observed correlations; the
  expected attenuation of the planted effect at each site is in the ground truth
  (``observed_effect_scale``).
* ``baseline_r``, ``scale_r``: per scan and ROI, ``site.baseline * U(0.8, 1.2)`` and
  ``site.scale * U(0.8, 1.2)``: raw-scale values with a moderate offset (up to a few
  thousand), which FC code must handle without loss of precision.

Sites differ in TR, scan length (optionally jittered per scan), noise, global-signal amplitude
and gradient, and offset. Task datasets can confound diagnosis with site: the patient fraction
is set per site (:attr:`DatasetSpec.patient_fraction`), while the overall split is balanced.

Ground truth (``TaskSpec.ground_truth``)
-----------------------------------------
``delta_fc`` (R, R): the exact change of the expected latent correlation, patients minus
controls. ``edges``: ROI pairs ``[i, j]`` (i < j) with ``|delta_fc| >= 0.5 * |delta|`` (with the
uniform planted patterns here, exactly the planted pairs); ``edge_effect``: their true change.
``affected_rois``: the ROIs the effect is defined on (all ROIs of the networks of a within- or
between-network effect; the hubs of a hub effect). ``affected_networks``: networks of the ROIs
that touch a planted edge. ``roi_effect``: the summed ``|delta_fc|`` row of every ROI, for
graded scoring.

Default cohort (:func:`make_default_synthetic`)
-----------------------------------------------
Four pretraining-only datasets (``hcp_like``, ``ukb_like``, ``nki_like``, ``camcan_like``; 7
sites, TR 0.72-1.97 s) plus the datasets of the three **internal** tasks (``clin_a``,
``clin_b``, ``clin_c``; 7 sites) form the pretraining corpus: about 2,800 scans from 1,910
participants, many with 2-3 sessions. The two **external** tasks (``ext_d``, ``ext_e``; 5 sites,
about 250 scans) come from datasets and sites the corpus never saw. The planted effects are
listed in :func:`default_task_configs`. Planted-pattern feasibility: with the HCP reference,
uniform *increases* inside a set of ROIs can reach |delta| ~ 0.2-0.3, while decreases and
between-network changes are limited to |delta| ~ 0.05-0.08 (weaker coupling inside a network
while its coupling to the rest of the brain is unchanged is barely compatible with the
reference); :func:`max_effect_size` gives the bound for any pattern.

Examples
--------
>>> data = make_default_synthetic(seed=0, smoke=True)
>>> data.series[0].shape[1], sorted(data.tasks)[:2]
(100, ['dmn_hyperconnectivity', 'limbic_default_hubs'])
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bmlib.data.atlases import Atlas, load_atlas, load_reference_fc

__all__ = [
    "CohortModel",
    "DatasetSpec",
    "PlantedEffect",
    "SiteSpec",
    "SyntheticData",
    "TaskConfig",
    "TaskSpec",
    "ar1_coefficient",
    "combine",
    "default_pretraining_datasets",
    "default_task_configs",
    "make_default_synthetic",
    "make_diagnosis_task",
    "make_diagnosis_tasks",
    "make_positive_definite",
    "make_pretraining_corpus",
    "max_effect_size",
    "simulate_bold",
    "simulate_dataset",
]

EffectKind = Literal["within", "between", "rois"]
_EFFECT_KINDS = ("within", "between", "rois")
_CHUNK = 192  # scans simulated together (bounds peak memory at ~100 MB)
_PD_TOL = 1e-3  # smallest eigenvalue accepted for a patient covariance (before scaling by 1/F)
UNLABELED = "unlabeled"


# ----------------------------------------------------------------------------------------------
# Small numerical building blocks
# ----------------------------------------------------------------------------------------------


def make_positive_definite(matrix: np.ndarray, min_eigenvalue: float = 0.05) -> np.ndarray:
    """Clip the eigenvalues of a symmetric matrix and rescale it to a unit diagonal.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (R, R)
        Symmetric matrix (e.g. a group-mean FC).
    min_eigenvalue : float, default 0.05
        Eigenvalues below this floor are raised to it before rescaling.

    Returns
    -------
    numpy.ndarray of float64, shape (R, R)
        A positive-definite correlation matrix.

    Examples
    --------
    >>> c = make_positive_definite(np.array([[1.0, 1.2], [1.2, 1.0]]), 0.1)
    >>> bool(np.linalg.eigvalsh(c).min() > 0), float(c[0, 0])
    (True, 1.0)
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square 2D matrix (R, R), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("expected a finite matrix, got NaN or inf entries")
    if not np.allclose(m, m.T, atol=1e-8):
        raise ValueError("expected a symmetric matrix, got an asymmetric one")
    if not min_eigenvalue > 0:
        raise ValueError(f"expected min_eigenvalue > 0, got {min_eigenvalue}")
    w, v = np.linalg.eigh((m + m.T) / 2)
    s = (v * np.maximum(w, min_eigenvalue)) @ v.T
    d = np.sqrt(np.diag(s))
    out = s / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return (out + out.T) / 2


def ar1_coefficient(tr: float | np.ndarray, timescale: float | np.ndarray) -> np.ndarray:
    """AR(1) coefficient ``phi = exp(-tr / timescale)`` of a process sampled every ``tr`` s.

    Parameters
    ----------
    tr : float or array
        Repetition time(s) in seconds.
    timescale : float or array
        Autocorrelation time constant(s) in seconds.

    Returns
    -------
    numpy.ndarray of float64 (broadcast shape of the inputs)

    Examples
    --------
    >>> round(float(ar1_coefficient(0.72, 2.0)), 3)
    0.698
    """
    tr_a = np.asarray(tr, dtype=np.float64)
    ts_a = np.asarray(timescale, dtype=np.float64)
    if np.any(~(tr_a > 0)) or np.any(~(ts_a > 0)):
        raise ValueError(f"expected tr > 0 and timescale > 0 seconds, got {tr!r} and {timescale!r}")
    return np.exp(-tr_a / ts_a)


def _ar1_filter_(x: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Turn i.i.d. unit-variance rows of ``x`` (B, T, ...) into a stationary AR(1), in place.

    ``x[:, t] = phi * x[:, t-1] + sqrt(1 - phi**2) * x[:, t]``: the variance stays 1 and the
    filter is the same for all trailing dimensions (ROIs), so spatial correlation is kept.
    """
    shape = (x.shape[0],) + (1,) * (x.ndim - 2)
    a = phi.astype(x.dtype).reshape(shape)
    b = np.sqrt(1.0 - phi**2).astype(x.dtype).reshape(shape)
    for t in range(1, x.shape[1]):
        x[:, t] *= b
        x[:, t] += a * x[:, t - 1]
    return x


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"expected a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected seed to be a non-negative int or None, got {seed!r}")
    return int(seed)


def _dataset_rng(seed: int | None, name: str) -> np.random.Generator:
    """Generator keyed by (seed, dataset name): a dataset's scans do not depend on the others."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def simulate_bold(
    cov: np.ndarray,
    n_timepoints: int,
    tr: float,
    noise: float = 0.0,
    rng: np.random.Generator | int | None = None,
    *,
    timescale: float = 2.0,
) -> np.ndarray:
    """One BOLD-like scan: a spatially correlated AR(1) process plus white noise.

    Parameters
    ----------
    cov : numpy.ndarray, shape (R, R)
        Positive-definite spatial covariance of the latent signal (a correlation matrix gives
        unit-variance ROIs).
    n_timepoints : int
        Number of volumes T (>= 2).
    tr : float
        Repetition time in seconds; the AR(1) coefficient is ``exp(-tr / timescale)``.
    noise : float, default 0.0
        Standard deviation of white measurement noise added to every ROI.
    rng : numpy.random.Generator, int or None
        Random source (an int is used as a seed).
    timescale : float, default 2.0
        Autocorrelation time constant in seconds.

    Returns
    -------
    numpy.ndarray of float32, shape (T, R)
        Rows are timepoints. The expected correlation is ``cov`` rescaled to a unit diagonal
        and attenuated by the noise.

    Examples
    --------
    >>> x = simulate_bold(np.array([[1.0, 0.6], [0.6, 1.0]]), 2000, tr=2.0, rng=0)
    >>> x.shape, round(float(np.corrcoef(x.T)[0, 1]), 1)
    ((2000, 2), 0.6)
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected cov of shape (R, R), got shape {c.shape}")
    if not np.allclose(c, c.T, atol=1e-8):
        raise ValueError("expected a symmetric cov, got an asymmetric matrix")
    if isinstance(n_timepoints, bool) or not isinstance(n_timepoints, (int, np.integer)):
        raise TypeError(f"expected n_timepoints to be an int, got {type(n_timepoints).__name__}")
    if n_timepoints < 2:
        raise ValueError(f"expected n_timepoints >= 2, got {n_timepoints}")
    if not noise >= 0:
        raise ValueError(f"expected noise >= 0, got {noise}")
    phi = ar1_coefficient(tr, timescale)
    try:
        chol = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError(
            "expected a positive-definite cov; make_positive_definite(cov) can repair it"
        ) from None
    gen = _as_rng(rng)
    z = gen.standard_normal((1, int(n_timepoints), c.shape[0]))
    x = _ar1_filter_(z @ chol.T, np.atleast_1d(phi))[0]
    if noise > 0:
        x += noise * gen.standard_normal(x.shape)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Specifications
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteSpec:
    """Acquisition and nuisance parameters of one site.

    Parameters
    ----------
    name : str
        Site identifier, unique across all datasets of a cohort.
    tr : float
        Repetition time in seconds.
    n_timepoints : int
        Scan length in volumes.
    noise : float, default 0.4
        Standard deviation of white measurement noise, relative to the unit latent signal.
    global_signal : float, default 0.3
        Amplitude of the site's shared scanner/global component.
    gradient : float, default 0.0
        Anterior-posterior slope of that component's spatial loading, in [-0.9, 0.9].
    baseline : float, default 0.0
        Mean offset of the raw values (per ROI, times U(0.8, 1.2)).
    scale : float, default 1.0
        Raw units per latent standard deviation (per ROI, times U(0.8, 1.2)).
    length_jitter : int, default 0
        Each scan loses a uniform 0..length_jitter volumes at the end (variable lengths).
    """

    name: str
    tr: float
    n_timepoints: int
    noise: float = 0.4
    global_signal: float = 0.3
    gradient: float = 0.0
    baseline: float = 0.0
    scale: float = 1.0
    length_jitter: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"expected a non-empty site name without '/', got {self.name!r}")
        if not self.tr > 0:
            raise ValueError(f"site {self.name!r}: expected tr > 0 seconds, got {self.tr}")
        if int(self.n_timepoints) != self.n_timepoints or self.n_timepoints < 10:
            raise ValueError(
                f"site {self.name!r}: expected an integer n_timepoints >= 10, "
                f"got {self.n_timepoints}"
            )
        if not 0 <= self.length_jitter < self.n_timepoints - 9:
            raise ValueError(
                f"site {self.name!r}: expected 0 <= length_jitter < n_timepoints - 9, "
                f"got {self.length_jitter}"
            )
        if self.noise < 0 or self.global_signal < 0 or not self.scale > 0:
            raise ValueError(
                f"site {self.name!r}: expected noise >= 0, global_signal >= 0 and scale > 0, got "
                f"{self.noise}, {self.global_signal} and {self.scale}"
            )
        if not -0.9 <= self.gradient <= 0.9:
            raise ValueError(
                f"site {self.name!r}: expected gradient in [-0.9, 0.9], got {self.gradient}"
            )


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: participants at one or more sites, each scanned one or more times.

    Parameters
    ----------
    name : str
        Dataset identifier (participant ids are ``"<name>-sub<NNNN>"``).
    sites : tuple of SiteSpec
        Its sites.
    n_participants : tuple of int
        Participants per site (same length as ``sites``).
    session_probs : tuple of float, default (0.0, 1.0)
        ``session_probs[i]`` is the probability that a participant has ``i + 1`` sessions.
    age_range : (float, float), default (18, 40)
        Ages are uniform in this range (years).
    patient_fraction : tuple of float or None, default None
        Fraction of patients per site for a labelled dataset; ``None`` for unlabelled data.
        Counts are rounded per site; unequal fractions confound diagnosis with site.
    """

    name: str
    sites: tuple[SiteSpec, ...]
    n_participants: tuple[int, ...]
    session_probs: tuple[float, ...] = (0.0, 1.0)
    age_range: tuple[float, float] = (18.0, 40.0)
    patient_fraction: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"expected a non-empty dataset name without '/', got {self.name!r}")
        sites = tuple(self.sites)
        if not sites or not all(isinstance(s, SiteSpec) for s in sites):
            raise TypeError(f"dataset {self.name!r}: expected a non-empty sequence of SiteSpec")
        n = tuple(int(v) for v in np.atleast_1d(self.n_participants))
        if len(n) != len(sites) or min(n) < 1:
            raise ValueError(
                f"dataset {self.name!r}: expected one participant count >= 1 per site "
                f"({len(sites)} sites), got {self.n_participants}"
            )
        probs = tuple(float(p) for p in self.session_probs)
        if not probs or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
            raise ValueError(
                f"dataset {self.name!r}: expected session_probs >= 0 summing to 1, got {probs}"
            )
        if not self.age_range[0] <= self.age_range[1]:
            raise ValueError(
                f"dataset {self.name!r}: expected age_range (low, high), got {self.age_range}"
            )
        frac = self.patient_fraction
        if frac is not None:
            frac = tuple(float(f) for f in np.atleast_1d(frac))
            if len(frac) != len(sites) or min(frac) < 0 or max(frac) > 1:
                raise ValueError(
                    f"dataset {self.name!r}: expected one patient fraction in [0, 1] per site "
                    f"({len(sites)} sites), got {self.patient_fraction}"
                )
        if len({s.name for s in sites}) != len(sites):
            raise ValueError(f"dataset {self.name!r}: site names must be unique")
        object.__setattr__(self, "sites", sites)
        object.__setattr__(self, "n_participants", n)
        object.__setattr__(self, "session_probs", probs)
        object.__setattr__(self, "patient_fraction", frac)

    @property
    def labelled(self) -> bool:
        """Whether participants have a diagnosis (control/patient)."""
        return self.patient_fraction is not None


@dataclass(frozen=True)
class PlantedEffect:
    """A diagnosis effect: a uniform change of latent correlation on a set of ROI pairs.

    Parameters
    ----------
    kind : {"within", "between", "rois"}
        ``"within"``: all pairs inside each listed network. ``"between"``: all pairs across
        the two listed networks. ``"rois"``: all pairs between the listed hub ROIs and the
        ROIs of the listed networks (hubs included); with no networks, the pairs among the
        hubs.
    delta : float
        Signed change of the expected latent correlation of patients versus controls on every
        planted pair (negative: hypoconnectivity).
    networks : tuple of str, default ()
        Network names of the atlas.
    rois : tuple of int, default ()
        Hub ROI indices (``kind="rois"`` only).

    Examples
    --------
    >>> PlantedEffect.within("Default", -0.15).pairs(load_atlas()).shape
    (276, 2)
    """

    kind: EffectKind
    delta: float
    networks: tuple[str, ...] = ()
    rois: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _EFFECT_KINDS:
            raise ValueError(f"expected effect kind in {_EFFECT_KINDS}, got {self.kind!r}")
        if not (math.isfinite(self.delta) and 0 < abs(self.delta) < 1):
            raise ValueError(f"expected 0 < |delta| < 1 (a correlation change), got {self.delta}")
        nets = (self.networks,) if isinstance(self.networks, str) else tuple(self.networks)
        rois = tuple(int(r) for r in self.rois)
        if self.kind == "within" and not nets:
            raise ValueError("a 'within' effect needs at least one network")
        if self.kind == "between" and len(nets) != 2:
            raise ValueError(f"a 'between' effect needs exactly two networks, got {list(nets)}")
        if self.kind == "rois" and not rois:
            raise ValueError("a 'rois' effect needs at least one hub ROI index")
        if self.kind != "rois" and rois:
            raise ValueError(f"rois are only used by kind='rois', got kind={self.kind!r}")
        object.__setattr__(self, "networks", nets)
        object.__setattr__(self, "rois", rois)
        object.__setattr__(self, "delta", float(self.delta))

    @classmethod
    def within(cls, networks: str | Sequence[str], delta: float) -> PlantedEffect:
        """Change of coupling inside each of ``networks``."""
        return cls("within", delta, tuple([networks] if isinstance(networks, str) else networks))

    @classmethod
    def between(cls, network_a: str, network_b: str, delta: float) -> PlantedEffect:
        """Change of coupling between two networks."""
        return cls("between", delta, (network_a, network_b))

    @classmethod
    def hubs(cls, rois: Sequence[int], delta: float, networks: Sequence[str] = ()) -> PlantedEffect:
        """Change of coupling of hub ROIs with the ROIs of ``networks`` (or among themselves)."""
        return cls("rois", delta, tuple(networks), tuple(rois))

    def pattern(self, atlas: Atlas) -> np.ndarray:
        """0/1 symmetric matrix of the planted pairs.

        Returns
        -------
        numpy.ndarray of float64, shape (R, R), zero diagonal
        """
        r = atlas.n_rois
        masks = [atlas.network_mask(n) for n in self.networks]
        bad = [i for i in self.rois if not 0 <= i < r]
        if bad:
            raise ValueError(f"expected hub ROI indices in [0, {r}), got {bad}")
        p = np.zeros((r, r))
        if self.kind == "within":
            for m in masks:
                p[np.ix_(m, m)] = 1.0
        elif self.kind == "between":
            a, b = masks
            if np.any(a & b):
                raise ValueError(f"'between' networks must differ, got {list(self.networks)}")
            p[np.ix_(a, b)] = 1.0
            p[np.ix_(b, a)] = 1.0
        else:
            hub = np.zeros(r, dtype=bool)
            hub[list(self.rois)] = True
            target = np.logical_or.reduce(masks) | hub if masks else hub
            p[np.ix_(hub, target)] = 1.0
            p[np.ix_(target, hub)] = 1.0
        np.fill_diagonal(p, 0.0)
        return p

    def pairs(self, atlas: Atlas) -> np.ndarray:
        """Planted ROI pairs ``(i, j)`` with ``i < j``, shape (n_pairs, 2), int64."""
        i, j = np.nonzero(np.triu(self.pattern(atlas), 1))
        return np.stack([i, j], axis=1).astype(np.int64)

    def describe(self, atlas: Atlas) -> str:
        """Short phrase naming the planted pattern."""
        if self.kind == "within":
            return "within-" + "/".join(self.networks) + " coupling"
        if self.kind == "between":
            return f"{self.networks[0]}-{self.networks[1]} between-network coupling"
        hubs = ", ".join(atlas.labels[i] for i in self.rois)
        tgt = " with " + "/".join(self.networks) if self.networks else " among themselves"
        return f"coupling of hub ROIs ({hubs}){tgt}"


@dataclass(frozen=True)
class CohortModel:
    """Population-level parameters of the generative model (see the module docstring).

    Parameters
    ----------
    atlas : str, default "schaefer100_7"
        Shipped atlas name.
    reference : str, default "schaefer100_hcp"
        Shipped reference group FC (same ROI order as the atlas).
    min_eigenvalue : float, default 0.05
        Eigenvalue floor when making the reference positive definite.
    private_variance : float, default 0.5
        ``psi``: ROI-specific latent variance, relative to the reference's unit variance.
    signature_strength : float, default 0.25
        ``a``: weight of the participant signature ``U_p U_p^T``.
    signature_rank : int, default 8
        ``k``: columns of ``U_p``.
    signature_network_weight : float, default 0.7
        Weight of the network-shared part of the signature loadings (0: ROI-specific only).
    state_strength : float, default 0.1
        ``b``: weight of the per-session state term.
    state_rank : int, default 4
        Columns of the session state loadings ``V_ps``.
    timescale_range : (float, float), default (1.5, 3.0)
        Range of the participants' AR(1) timescales in seconds.
    global_timescale : float, default 15.0
        AR(1) timescale of the site's global component, in seconds.
    noise_multipliers : tuple of (str, float), default (("Limbic", 1.5),)
        Measurement-noise multiplier per network (others 1).
    """

    atlas: str = "schaefer100_7"
    reference: str = "schaefer100_hcp"
    min_eigenvalue: float = 0.05
    private_variance: float = 0.5
    signature_strength: float = 0.25
    signature_rank: int = 8
    signature_network_weight: float = 0.7
    state_strength: float = 0.1
    state_rank: int = 4
    timescale_range: tuple[float, float] = (1.5, 3.0)
    global_timescale: float = 15.0
    noise_multipliers: tuple[tuple[str, float], ...] = (("Limbic", 1.5),)

    def __post_init__(self) -> None:
        for name in ("private_variance", "signature_strength", "state_strength"):
            if getattr(self, name) < 0:
                raise ValueError(f"expected {name} >= 0, got {getattr(self, name)}")
        if self.signature_rank < 1 or self.state_rank < 1:
            raise ValueError(
                f"expected signature_rank >= 1 and state_rank >= 1, got "
                f"{self.signature_rank} and {self.state_rank}"
            )
        lo, hi = self.timescale_range
        if not 0 < lo <= hi or not self.global_timescale > 0:
            raise ValueError(
                f"expected 0 < timescale_range[0] <= timescale_range[1] and global_timescale > 0, "
                f"got {self.timescale_range} and {self.global_timescale}"
            )

    @property
    def normaliser(self) -> float:
        """``F = 1 + psi + a + b``: latent correlations are ``(...)/F``."""
        return 1.0 + self.private_variance + self.signature_strength + self.state_strength


@dataclass(frozen=True)
class TaskConfig:
    """Recipe of one labelled diagnosis task.

    Parameters
    ----------
    name : str
        Task name.
    dataset : DatasetSpec
        Its (labelled) dataset; ``patient_fraction`` sets the site confounding.
    effect : PlantedEffect
        The planted group difference.
    severity_sd : float, default 0.25
        Between-patient spread of the effect (``sev = 1 + severity_sd * clip(N(0,1), -2, 2)``).
    """

    name: str
    dataset: DatasetSpec
    effect: PlantedEffect
    severity_sd: float = 0.25

    def __post_init__(self) -> None:
        if not self.dataset.labelled:
            raise ValueError(
                f"task {self.name!r}: expected a labelled dataset (patient_fraction set), "
                f"got patient_fraction=None for {self.dataset.name!r}"
            )
        if not 0 <= self.severity_sd <= 0.5:
            raise ValueError(
                f"task {self.name!r}: expected 0 <= severity_sd <= 0.5, got {self.severity_sd}"
            )


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class TaskSpec:
    """A labelled diagnosis task and its planted ground truth.

    Parameters
    ----------
    name : str
    datasets : list of str
        Datasets whose labelled scans form the task.
    kind : {"internal", "external"}
        ``"internal"`` when its datasets are part of the pretraining corpus.
    label_column, positive, negative : str
        Phenotype column and its two class values.
    description : str
        One sentence: affected networks, effect size, confounding.
    ground_truth : dict
        JSON-serialisable planted truth (see the module docstring): ``affected_networks``,
        ``affected_rois``, ``roi_labels``, ``roi_effect``, ``edges``, ``edge_effect``,
        ``effect_size``, ``site_confounding``, ``delta_fc`` (R x R nested list), ...
    """

    name: str
    datasets: list[str]
    kind: str
    label_column: str = "diagnosis"
    positive: str = "patient"
    negative: str = "control"
    description: str = ""
    ground_truth: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """Rebuild a task from :meth:`to_dict` output."""
        return cls(**d)

    def delta_fc(self) -> np.ndarray:
        """The true patient-minus-control change of latent correlation, shape (R, R)."""
        return np.asarray(self.ground_truth["delta_fc"], dtype=np.float64)


@dataclass
class SyntheticData:
    """Generated scans, one phenotype row per scan, and the labelled tasks.

    Parameters
    ----------
    series : list of numpy.ndarray
        Each (T_i, R) float32, rows are timepoints, aligned with ``phenotypes`` rows.
    phenotypes : pandas.DataFrame
        Columns ``sample_id, participant, dataset, site, session, diagnosis, age, sex, tr,
        n_timepoints``; diagnosis is ``"control"``, ``"patient"`` or ``"unlabeled"``.
    tasks : dict of str to TaskSpec
    pretraining_datasets : list of str
        Datasets of the pretraining corpus (external tasks' datasets are never among them).
    atlas_name : str, default "schaefer100_7"
    sites : pandas.DataFrame or None
        One row per site with its acquisition and nuisance parameters.
    """

    series: list[np.ndarray]
    phenotypes: pd.DataFrame
    tasks: dict[str, TaskSpec]
    pretraining_datasets: list[str]
    atlas_name: str = "schaefer100_7"
    sites: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if len(self.series) != len(self.phenotypes):
            raise ValueError(
                f"expected one phenotype row per series, got {len(self.series)} series and "
                f"{len(self.phenotypes)} rows"
            )

    def __len__(self) -> int:
        return len(self.series)

    @property
    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Planted ground truth per task name."""
        return {name: t.ground_truth for name, t in self.tasks.items()}

    def pretraining_indices(self) -> np.ndarray:
        """Row positions of the pretraining corpus (int64)."""
        ds = self.phenotypes["dataset"].to_numpy()
        return np.flatnonzero(np.isin(ds, list(self.pretraining_datasets)))

    def task_indices(self, name: str) -> np.ndarray:
        """Row positions of a task's labelled scans (int64)."""
        if name not in self.tasks:
            raise KeyError(f"no task {name!r}; available: {sorted(self.tasks)}")
        t = self.tasks[name]
        ph = self.phenotypes
        keep = np.isin(ph["dataset"].to_numpy(), t.datasets) & np.isin(
            ph[t.label_column].to_numpy(), [t.positive, t.negative]
        )
        return np.flatnonzero(keep)

    def summary(self) -> pd.DataFrame:
        """Participants, scans, patients, TR and mean length per dataset and site."""
        ph = self.phenotypes
        g = ph.groupby(["dataset", "site"], sort=False)
        out = pd.DataFrame(
            {
                "participants": g["participant"].nunique(),
                "scans": g.size(),
                "patients": g["diagnosis"].agg(lambda d: int((d.to_numpy() == "patient").sum())),
                "tr": g["tr"].first(),
                "mean_timepoints": g["n_timepoints"].mean().round(1),
            }
        ).reset_index()
        out["pretraining"] = np.isin(out["dataset"].to_numpy(), list(self.pretraining_datasets))
        return out


# ----------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------


class _Population:
    """Atlas, reference covariance and derived per-ROI constants of a CohortModel."""

    def __init__(self, model: CohortModel) -> None:
        self.model = model
        self.atlas = load_atlas(model.atlas)
        ref = load_reference_fc(model.reference)
        r = self.atlas.n_rois
        if ref.shape != (r, r):
            raise ValueError(
                f"reference {model.reference!r} has shape {ref.shape}, atlas {model.atlas!r} "
                f"has {r} ROIs"
            )
        self.reference = make_positive_definite(ref, model.min_eigenvalue)
        self.base_cov = self.reference + model.private_variance * np.eye(r)  # C + psi I
        self.control_chol = np.linalg.cholesky(self.base_cov)
        self.network_index = self.atlas.network_index()
        mult = dict(model.noise_multipliers)
        unknown = set(mult) - set(self.atlas.network_names)
        if unknown:
            raise ValueError(
                f"noise_multipliers name unknown networks {sorted(unknown)}; "
                f"atlas networks: {list(self.atlas.network_names)}"
            )
        self.noise_mult = np.array([mult.get(n, 1.0) for n in self.atlas.networks])
        y = self.atlas.coords[:, 1]
        y = np.nan_to_num(y - np.nanmean(y))
        self.y_scaled = y / max(np.abs(y).max(), 1e-12)

    def site_loading(self, site: SiteSpec) -> np.ndarray:
        return 1.0 + site.gradient * self.y_scaled

    def site_variance(self, site: SiteSpec) -> np.ndarray:
        """Observed variance per ROI relative to the unit latent variance, shape (R,)."""
        w = self.site_loading(site)
        return 1.0 + (site.global_signal * w) ** 2 + (site.noise * self.noise_mult) ** 2

    def effect_cov_step(self, effect: PlantedEffect) -> np.ndarray:
        """``F * delta * P``: what one unit of severity adds to ``C + psi I``."""
        return self.model.normaliser * effect.delta * effect.pattern(self.atlas)

    def _min_eigenvalue(self, effect: PlantedEffect, magnitude: float) -> float:
        step = effect.pattern(self.atlas) * self.model.normaliser * np.sign(effect.delta)
        return float(np.linalg.eigvalsh(self.base_cov + magnitude * step)[0])

    def max_delta(self, effect: PlantedEffect, max_severity: float) -> float:
        """Largest ``|delta|`` of the effect's pattern and sign that stays positive definite."""
        if self._min_eigenvalue(effect, max_severity) >= _PD_TOL:
            return 1.0
        lo, hi = 0.0, 1.0  # lambda_min is concave in the magnitude: the feasible set is [0, x]
        for _ in range(30):
            mid = (lo + hi) / 2
            feasible = self._min_eigenvalue(effect, mid * max_severity) >= _PD_TOL
            lo, hi = (mid, hi) if feasible else (lo, mid)
        return lo

    def check_effect(self, effect: PlantedEffect, max_severity: float) -> None:
        """Refuse effects whose patient covariance would not be positive definite."""
        lam = self._min_eigenvalue(effect, abs(effect.delta) * max_severity)
        if lam >= _PD_TOL:
            return
        raise ValueError(
            f"planted effect {effect.describe(self.atlas)} with delta={effect.delta:+.3f} makes "
            f"the patient covariance indefinite at severity {max_severity:.2f} (min eigenvalue "
            f"{lam:.3f}); the largest feasible |delta| for this pattern is "
            f"{self.max_delta(effect, max_severity):.3f} (reduce |delta| or severity_sd, or raise "
            "CohortModel.private_variance)"
        )


def max_effect_size(
    effect: PlantedEffect, *, severity_sd: float = 0.25, model: CohortModel | None = None
) -> float:
    """Largest ``|delta|`` that the effect's pattern and sign allow (positive definiteness).

    Parameters
    ----------
    effect : PlantedEffect
        Its ``kind``, ``networks``, ``rois`` and the sign of ``delta`` are used.
    severity_sd : float, default 0.25
        Patients reach severity ``1 + 2 * severity_sd``; the bound holds there.
    model : CohortModel, optional

    Returns
    -------
    float
        In (0, 1]; 1.0 means the pattern is unconstrained below a correlation change of 1.

    Examples
    --------
    >>> round(max_effect_size(PlantedEffect.within("Default", 0.1)), 2) > 0.15
    True
    """
    if not isinstance(effect, PlantedEffect):
        raise TypeError(f"expected a PlantedEffect, got {type(effect).__name__}")
    if not 0 <= severity_sd <= 0.5:
        raise ValueError(f"expected 0 <= severity_sd <= 0.5, got {severity_sd}")
    with threadpool_limits(limits=1, user_api="blas"):  # 100 x 100 eigenproblems
        return _population(model).max_delta(effect, 1.0 + 2.0 * severity_sd)


def _draw_participants(
    dataset: DatasetSpec, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Participants table (site, diagnosis, age, sex, n_sessions) and per-site index lists."""
    rows: list[dict[str, Any]] = []
    offset = 0
    per_site: list[np.ndarray] = []
    n_sess_choices = np.arange(1, len(dataset.session_probs) + 1)
    for k, (site, n) in enumerate(zip(dataset.sites, dataset.n_participants, strict=True)):
        if dataset.patient_fraction is None:
            dx = np.full(n, UNLABELED, dtype=object)
        else:
            n_pat = int(round(dataset.patient_fraction[k] * n))
            dx = np.array(["patient"] * n_pat + ["control"] * (n - n_pat), dtype=object)
            dx = dx[rng.permutation(n)]
        ages = rng.uniform(*dataset.age_range, size=n)
        sexes = np.where(rng.random(n) < 0.5, "F", "M")
        n_sess = rng.choice(n_sess_choices, size=n, p=np.asarray(dataset.session_probs))
        for i in range(n):
            rows.append(
                {
                    "participant": f"{dataset.name}-sub{offset + i + 1:04d}",
                    "site": site.name,
                    "diagnosis": dx[i],
                    "age": round(float(ages[i]), 1),
                    "sex": sexes[i],
                    "n_sessions": int(n_sess[i]),
                }
            )
        per_site.append(np.arange(offset, offset + n))
        offset += n
    return pd.DataFrame(rows), per_site


def _signatures(pop: _Population, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-norm-row loadings (n, R, k) with a network-shared part."""
    m = pop.model
    k = m.signature_rank
    u = rng.standard_normal((n, pop.atlas.n_rois, k))
    net = rng.standard_normal((n, len(pop.atlas.network_names), k))
    u += m.signature_network_weight * net[:, pop.network_index, :]
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    return u.astype(np.float32)


def _simulate_chunk(
    pop: _Population,
    site: SiteSpec,
    chol: np.ndarray,
    signature: np.ndarray,
    tau: np.ndarray,
    n_timepoints: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulate B scans of one site at once.

    Parameters
    ----------
    chol : (R, R) or (B, R, R) Cholesky factors of ``C + psi I + sev F delta P``.
    signature : (B, R, k) participant loadings; tau : (B,) AR timescales (s).

    Returns
    -------
    numpy.ndarray of float32, shape (B, T, R)
    """
    m = pop.model
    b, r = signature.shape[0], pop.atlas.n_rois
    t = n_timepoints
    f32 = np.float32
    x = rng.standard_normal((b, t, r), dtype=f32)
    if chol.ndim == 2:
        x = x @ chol.T.astype(f32)  # (B, T, R)
    else:
        x = np.matmul(x, np.swapaxes(chol, 1, 2).astype(f32))  # (B, T, R)
    w = rng.standard_normal((b, t, m.signature_rank), dtype=f32)
    x += math.sqrt(m.signature_strength) * np.matmul(w, np.swapaxes(signature, 1, 2))
    state = rng.standard_normal((b, r, m.state_rank))
    state /= np.linalg.norm(state, axis=2, keepdims=True)
    w = rng.standard_normal((b, t, m.state_rank), dtype=f32)
    x += math.sqrt(m.state_strength) * np.matmul(w, np.swapaxes(state.astype(f32), 1, 2))
    x *= f32(1.0 / math.sqrt(m.normaliser))  # unit-variance latent, correlation R_ps
    _ar1_filter_(x, ar1_coefficient(site.tr, tau))
    g = rng.standard_normal((b, t), dtype=f32)
    _ar1_filter_(g, np.full(b, float(ar1_coefficient(site.tr, m.global_timescale))))
    loading = (site.global_signal * pop.site_loading(site)).astype(f32)
    x += g[:, :, None] * loading  # site scanner / global component
    sigma = (site.noise * pop.noise_mult).astype(f32)
    x += rng.standard_normal((b, t, r), dtype=f32) * sigma
    base = site.baseline * rng.uniform(0.8, 1.2, size=(b, 1, r))
    scale = site.scale * rng.uniform(0.8, 1.2, size=(b, 1, r))
    x *= scale.astype(f32)
    x += base.astype(f32)
    return x


def simulate_dataset(
    dataset: DatasetSpec,
    *,
    effect: PlantedEffect | None = None,
    severity_sd: float = 0.25,
    model: CohortModel | None = None,
    seed: int | None = 0,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Simulate all scans of one dataset.

    Parameters
    ----------
    dataset : DatasetSpec
    effect : PlantedEffect, optional
        Effect carried by the dataset's patients (labelled datasets only).
    severity_sd : float, default 0.25
        Between-patient spread of the effect.
    model : CohortModel, optional
        Population parameters (defaults to ``CohortModel()``).
    seed : int or None, default 0
        Together with the dataset name, fixes every draw: the same dataset gives the same scans
        whatever else is generated with it.

    Returns
    -------
    series : list of numpy.ndarray, each (T_i, R) float32
    phenotypes : pandas.DataFrame, one row per scan (see :class:`SyntheticData`)
    """
    if not isinstance(dataset, DatasetSpec):
        raise TypeError(f"expected a DatasetSpec, got {type(dataset).__name__}")
    if not 0 <= severity_sd <= 0.5:
        raise ValueError(f"expected 0 <= severity_sd <= 0.5, got {severity_sd}")
    if effect is not None and not dataset.labelled:
        raise ValueError(
            f"dataset {dataset.name!r} is unlabelled (patient_fraction=None): it cannot carry "
            "a planted effect"
        )
    pop = _population(model)
    return _simulate_dataset(pop, dataset, effect, severity_sd, _check_seed(seed))


def _simulate_dataset(
    pop: _Population,
    dataset: DatasetSpec,
    effect: PlantedEffect | None,
    severity_sd: float,
    seed: int | None,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    # The (B*T, R) x (R, R) products are small: one BLAS thread is as fast when the machine is
    # idle and up to 30x faster when other processes (pytest-xdist workers) compete for cores.
    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate_dataset_unlimited(pop, dataset, effect, severity_sd, seed)


def _simulate_dataset_unlimited(
    pop: _Population,
    dataset: DatasetSpec,
    effect: PlantedEffect | None,
    severity_sd: float,
    seed: int | None,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    m = pop.model
    rng = _dataset_rng(seed, dataset.name)
    parts, per_site = _draw_participants(dataset, rng)
    n_part = len(parts)
    is_patient = parts["diagnosis"].to_numpy() == "patient"
    sev = np.where(is_patient, 1.0 + severity_sd * np.clip(rng.standard_normal(n_part), -2, 2), 0.0)
    if effect is not None and is_patient.any():
        pop.check_effect(effect, 1.0 + 2.0 * severity_sd)
        step = pop.effect_cov_step(effect)
        chols = np.stack(
            [pop.control_chol if s == 0 else np.linalg.cholesky(pop.base_cov + s * step)
             for s in sev]
        )  # fmt: skip
    else:
        chols = None
    signatures = _signatures(pop, n_part, rng)
    tau = rng.uniform(*m.timescale_range, size=n_part)

    pid, dx = parts["participant"].to_numpy(), parts["diagnosis"].to_numpy()
    age, sex = parts["age"].to_numpy(), parts["sex"].to_numpy()
    series: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    for site, members in zip(dataset.sites, per_site, strict=True):
        n_sess = parts["n_sessions"].to_numpy()[members]
        scan_part = np.repeat(members, n_sess)  # participant index of every scan
        scan_sess = np.concatenate([np.arange(1, s + 1) for s in n_sess])
        lengths = site.n_timepoints - rng.integers(0, site.length_jitter + 1, size=len(scan_part))
        for start in range(0, len(scan_part), _CHUNK):
            sl = slice(start, start + _CHUNK)
            idx = scan_part[sl]
            chol = pop.control_chol if chols is None else chols[idx]
            x = _simulate_chunk(pop, site, chol, signatures[idx], tau[idx], site.n_timepoints, rng)
            for j, p in enumerate(idx):
                n_t = int(lengths[sl][j])
                sess = int(scan_sess[sl][j])
                series.append(x[j, :n_t].copy())
                rows.append(
                    {
                        "sample_id": f"{pid[p]}_ses-{sess}",
                        "participant": pid[p],
                        "dataset": dataset.name,
                        "site": site.name,
                        "session": sess,
                        "diagnosis": dx[p],
                        "age": float(age[p]),
                        "sex": sex[p],
                        "tr": float(site.tr),
                        "n_timepoints": n_t,
                    }
                )
    return series, _phenotype_frame(rows)


_PHENO_COLUMNS = (
    "sample_id", "participant", "dataset", "site", "session", "diagnosis", "age", "sex", "tr",
    "n_timepoints",
)  # fmt: skip


def _phenotype_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(_PHENO_COLUMNS))
    for col in ("sample_id", "participant", "dataset", "site", "diagnosis", "sex"):
        df[col] = df[col].astype("str")
    df["session"] = df["session"].astype(np.int64)
    df["n_timepoints"] = df["n_timepoints"].astype(np.int64)
    df["age"] = df["age"].astype(np.float64)
    df["tr"] = df["tr"].astype(np.float64)
    return df


_POP_CACHE: dict[CohortModel, _Population] = {}


def _population(model: CohortModel | None) -> _Population:
    model = CohortModel() if model is None else model
    if not isinstance(model, CohortModel):
        raise TypeError(f"expected a CohortModel or None, got {type(model).__name__}")
    if model not in _POP_CACHE:
        _POP_CACHE[model] = _Population(model)
    return _POP_CACHE[model]


def _site_table(datasets: Iterable[DatasetSpec]) -> pd.DataFrame:
    rows = [{"dataset": d.name, **asdict(s)} for d in datasets for s in d.sites]
    df = pd.DataFrame(rows).rename(columns={"name": "site"})
    return df[["dataset", "site", *[c for c in df.columns if c not in ("dataset", "site")]]]


# ----------------------------------------------------------------------------------------------
# Ground truth, tasks, corpora
# ----------------------------------------------------------------------------------------------


def _strength_word(delta: float) -> str:
    a = abs(delta)
    return "strong" if a >= 0.1 else "moderate" if a >= 0.05 else "weak"


def _confounding(dataset: DatasetSpec, phenotypes: pd.DataFrame) -> dict[str, Any]:
    first = phenotypes.drop_duplicates("participant")
    by_site = {}
    for site in dataset.sites:
        dx = first.loc[first["site"].to_numpy() == site.name, "diagnosis"].to_numpy()
        by_site[site.name] = {
            "participants": int(len(dx)),
            "patients": int((dx == "patient").sum()),
        }
    frac = {s: v["patients"] / max(v["participants"], 1) for s, v in by_site.items()}
    spread = max(frac.values()) - min(frac.values())
    level = ("none" if spread < 0.1 else "mild" if spread < 0.3
             else "moderate" if spread < 0.5 else "heavy")  # fmt: skip
    return {
        "level": level,
        "patient_fraction_by_site": {s: round(f, 3) for s, f in frac.items()},
        "participants_by_site": {s: v["participants"] for s, v in by_site.items()},
        "patients_by_site": {s: v["patients"] for s, v in by_site.items()},
        "max_fraction_difference": round(spread, 3),
    }


def _ground_truth(
    pop: _Population, config: TaskConfig, phenotypes: pd.DataFrame
) -> tuple[dict[str, Any], str]:
    atlas = pop.atlas
    effect = config.effect
    delta = effect.delta * effect.pattern(atlas)  # exact expected latent change
    thr = 0.5 * abs(effect.delta)
    iu, ju = np.nonzero(np.triu(np.abs(delta) >= thr, 1))
    row = np.abs(delta).sum(axis=1)
    if effect.kind == "rois":
        rois = np.array(sorted(set(effect.rois)), dtype=np.int64)
    else:
        masks = [atlas.network_mask(n) for n in effect.networks]
        rois = np.flatnonzero(np.logical_or.reduce(masks))
    touched = {atlas.networks[i] for i in np.unique(np.concatenate([iu, ju]))}
    nets = [n for n in atlas.network_names if n in touched]
    confound = _confounding(config.dataset, phenotypes)
    observed = {}
    for site in config.dataset.sites:
        v = pop.site_variance(site)
        att = 1.0 / np.sqrt(np.outer(v, v))
        observed[site.name] = round(float(att[iu, ju].mean()), 4)
    gt = {
        "atlas": atlas.name,
        "n_rois": atlas.n_rois,
        "effect_kind": effect.kind,
        "direction": "increase" if effect.delta > 0 else "decrease",
        "effect_size": effect.delta,
        "effect_size_unit": "change of expected latent (noise-free) Pearson correlation, "
        "patients minus controls, on every planted edge",
        "strength": _strength_word(effect.delta),
        "severity_sd": config.severity_sd,
        "affected_networks": nets,
        "affected_rois": rois.tolist(),
        "roi_labels": [atlas.labels[i] for i in rois],
        "roi_effect": np.round(row, 6).tolist(),
        "hub_rois": list(effect.rois),
        "edges": np.stack([iu, ju], axis=1).tolist(),
        "edge_effect": np.round(delta[iu, ju], 6).tolist(),
        "edge_threshold": thr,
        "observed_effect_scale": observed,
        "site_confounding": confound,
        "delta_fc": np.round(delta, 6).tolist(),
    }
    fr = confound["patient_fraction_by_site"]
    conf_txt = (
        "no site confounding"
        if confound["level"] == "none"
        else f"{confound['level']} site confounding"
    )
    desc = (
        f"Patients show a {gt['strength']} {gt['direction']} of {effect.describe(atlas)} "
        f"(latent correlation {effect.delta:+.2f} on {len(iu)} edges, {len(rois)} ROIs); "
        f"patient fraction by site {'/'.join(f'{v:.2f}' for v in fr.values())} ({conf_txt})."
    )
    return gt, desc


def combine(parts: Sequence[SyntheticData], pretraining_datasets: Sequence[str]) -> SyntheticData:
    """Concatenate generated parts; set each task's kind from ``pretraining_datasets``.

    Parameters
    ----------
    parts : sequence of SyntheticData
        Parts on the same atlas with distinct datasets, sites and task names.
    pretraining_datasets : sequence of str
        Datasets that form the pretraining corpus. A task whose datasets are all among them is
        ``"internal"``, otherwise ``"external"``.

    Returns
    -------
    SyntheticData
    """
    if not parts:
        raise ValueError("expected at least one SyntheticData part, got none")
    if isinstance(pretraining_datasets, str):
        raise TypeError("expected a sequence of dataset names, got a single string")
    atlases = {p.atlas_name for p in parts}
    if len(atlases) != 1:
        raise ValueError(f"expected parts on one atlas, got {sorted(atlases)}")
    pheno = pd.concat([p.phenotypes for p in parts], ignore_index=True)
    dup = pheno["sample_id"].duplicated().to_numpy()
    if dup.any():
        shared = pheno["sample_id"].to_numpy()[dup][:3].tolist()
        raise ValueError(f"parts share sample ids, e.g. {shared}")
    for col in ("participant", "site"):
        owners = pheno.drop_duplicates([col, "dataset"])[col]
        shared = owners[owners.duplicated()].to_numpy()
        if len(shared):
            raise ValueError(
                f"{col} names must belong to one dataset, shared: {shared[:3].tolist()}"
            )
    known = set(pheno["dataset"].to_numpy())
    pre = list(dict.fromkeys(pretraining_datasets))
    missing = [d for d in pre if d not in known]
    if missing:
        raise ValueError(
            f"pretraining datasets {missing} are not among the generated datasets {sorted(known)}"
        )
    tasks: dict[str, TaskSpec] = {}
    for p in parts:
        for name, t in p.tasks.items():
            if name in tasks:
                raise ValueError(f"task name {name!r} appears in several parts")
            kind = "internal" if set(t.datasets) <= set(pre) else "external"
            tasks[name] = replace(t, kind=kind)
    sites = [p.sites for p in parts if p.sites is not None]
    return SyntheticData(
        series=[s for p in parts for s in p.series],
        phenotypes=pheno,
        tasks=tasks,
        pretraining_datasets=pre,
        atlas_name=parts[0].atlas_name,
        sites=pd.concat(sites, ignore_index=True) if sites else None,
    )


def make_diagnosis_task(
    config: TaskConfig, *, model: CohortModel | None = None, seed: int | None = 0
) -> SyntheticData:
    """Simulate one labelled diagnosis task with its planted ground truth.

    Parameters
    ----------
    config : TaskConfig
    model : CohortModel, optional
    seed : int or None, default 0

    Returns
    -------
    SyntheticData
        Its scans, ``tasks = {config.name: TaskSpec}`` (kind ``"external"`` until
        :func:`combine` puts its dataset in a pretraining corpus), no pretraining datasets.

    Examples
    --------
    >>> site = SiteSpec("demo-1", tr=2.0, n_timepoints=150)
    >>> ds = DatasetSpec("demo", (site,), (20,), patient_fraction=(0.5,))
    >>> out = make_diagnosis_task(TaskConfig("demo_dmn", ds, PlantedEffect.within("Default", 0.1)))
    >>> out.tasks["demo_dmn"].ground_truth["affected_networks"]
    ['Default']
    """
    if not isinstance(config, TaskConfig):
        raise TypeError(f"expected a TaskConfig, got {type(config).__name__}")
    pop = _population(model)
    series, pheno = _simulate_dataset(
        pop, config.dataset, config.effect, config.severity_sd, _check_seed(seed)
    )
    gt, desc = _ground_truth(pop, config, pheno)
    task = TaskSpec(
        name=config.name,
        datasets=[config.dataset.name],
        kind="external",
        description=desc,
        ground_truth=gt,
    )
    return SyntheticData(
        series, pheno, {config.name: task}, [], pop.atlas.name, _site_table([config.dataset])
    )


def make_diagnosis_tasks(
    configs: Sequence[TaskConfig] | None = None,
    *,
    model: CohortModel | None = None,
    seed: int | None = 0,
    smoke: bool = False,
) -> SyntheticData:
    """Simulate several diagnosis tasks (default: :func:`default_task_configs`).

    Parameters
    ----------
    configs : sequence of TaskConfig, optional
    model : CohortModel, optional
    seed : int or None, default 0
    smoke : bool, default False
        With ``configs=None``, use the small smoke-sized defaults.

    Returns
    -------
    SyntheticData
        No pretraining datasets: all tasks are ``"external"`` until :func:`combine`.
    """
    configs = default_task_configs(smoke) if configs is None else list(configs)
    return combine([make_diagnosis_task(c, model=model, seed=seed) for c in configs], [])


def make_pretraining_corpus(
    datasets: Sequence[DatasetSpec] | None = None,
    *,
    model: CohortModel | None = None,
    seed: int | None = 0,
    smoke: bool = False,
) -> SyntheticData:
    """Simulate unlabelled pretraining datasets (default: :func:`default_pretraining_datasets`).

    Parameters
    ----------
    datasets : sequence of DatasetSpec, optional
        Unlabelled datasets (``patient_fraction=None``).
    model : CohortModel, optional
    seed : int or None, default 0
    smoke : bool, default False
        With ``datasets=None``, use the small smoke-sized defaults.

    Returns
    -------
    SyntheticData
        Diagnosis ``"unlabeled"`` everywhere, no tasks, all datasets in the corpus.
    """
    datasets = default_pretraining_datasets(smoke) if datasets is None else list(datasets)
    pop = _population(model)
    seed = _check_seed(seed)
    parts = []
    for d in datasets:
        if not isinstance(d, DatasetSpec):
            raise TypeError(f"expected DatasetSpec entries, got {type(d).__name__}")
        if d.labelled:
            raise ValueError(
                f"dataset {d.name!r} is labelled; make it a task with make_diagnosis_task and "
                "put it in the corpus with combine(..., pretraining_datasets=...)"
            )
        s, ph = _simulate_dataset(pop, d, None, 0.0, seed)
        parts.append(SyntheticData(s, ph, {}, [d.name], pop.atlas.name, _site_table([d])))
    return combine(parts, [d.name for d in datasets])


# ----------------------------------------------------------------------------------------------
# The embedded default
# ----------------------------------------------------------------------------------------------


def _smoke_scale(d: DatasetSpec, per_site: int) -> DatasetSpec:
    return replace(d, n_participants=tuple(per_site for _ in d.sites))


def default_pretraining_datasets(smoke: bool = False) -> list[DatasetSpec]:
    """The four pretraining-only datasets of the embedded default (7 sites, ~2,400 scans).

    ``hcp_like`` (TR 0.72 s, 400 volumes, 2 sessions), ``ukb_like`` (3 sites, TR 0.735 s,
    370-380 volumes, 20% with a second session), ``nki_like`` (2 sites, TR 1.4 s, 260-280
    volumes, 2-3 sessions) and ``camcan_like`` (TR 1.97 s, 261 volumes). With ``smoke=True``,
    a handful of participants per site.
    """
    ds = [
        DatasetSpec(
            "hcp_like",
            (SiteSpec("hcp_like-1", 0.72, 400, noise=0.3, global_signal=0.2, gradient=0.1),),
            (250,),
            session_probs=(0.0, 1.0),
            age_range=(22, 36),
        ),
        DatasetSpec(
            "ukb_like",
            (
                SiteSpec("ukb_like-1", 0.735, 380, noise=0.45, global_signal=0.3, gradient=-0.2,
                         baseline=2000, scale=20, length_jitter=10),
                SiteSpec("ukb_like-2", 0.735, 380, noise=0.5, global_signal=0.35, gradient=0.2,
                         baseline=2000, scale=20, length_jitter=10),
                SiteSpec("ukb_like-3", 0.735, 380, noise=0.45, global_signal=0.25, gradient=0.0,
                         baseline=2000, scale=20, length_jitter=10),
            ),
            (300, 300, 300),
            session_probs=(0.8, 0.2),
            age_range=(45, 80),
        ),
        DatasetSpec(
            "nki_like",
            (
                SiteSpec("nki_like-1", 1.4, 280, noise=0.4, global_signal=0.3, gradient=0.3,
                         baseline=100, scale=1, length_jitter=20),
                SiteSpec("nki_like-2", 1.4, 280, noise=0.5, global_signal=0.4, gradient=-0.3,
                         baseline=100, scale=1, length_jitter=20),
            ),
            (100, 100),
            session_probs=(0.0, 0.5, 0.5),
            age_range=(8, 80),
        ),
        DatasetSpec(
            "camcan_like",
            (SiteSpec("camcan_like-1", 1.97, 261, noise=0.45, global_signal=0.35, gradient=0.0,
                      baseline=800, scale=8),),
            (250,),
            session_probs=(0.8, 0.2),
            age_range=(18, 88),
        ),
    ]  # fmt: skip
    return [_smoke_scale(d, 6) for d in ds] if smoke else ds


def default_task_configs(smoke: bool = False) -> list[TaskConfig]:
    """The five diagnosis tasks of the embedded default.

    Effects are changes of the expected latent correlation, patients minus controls, on every
    planted edge (observed FC changes are smaller: measurement noise attenuates them by the
    site's ``observed_effect_scale``, 0.6-0.9).

    ===========================  ========  ===================================  =============
    task                         kind      planted effect (edges)               patients/site
    ===========================  ========  ===================================  =============
    dmn_hyperconnectivity        internal  within Default +0.12 (276), strong   0.5/0.5
    salience_control_decoupling  internal  SalVentAttn-Cont -0.06 (156)         0.7/0.5/0.3
    sommot_weak                  internal  within SomMot -0.04 (91), weak       0.5/0.5
    limbic_default_hubs          external  8 Limbic/Default hubs +0.25 (28)     0.5/0.5
    visual_confounded            external  within Vis -0.04 (136), weak         0.85/0.5/0.15
    ===========================  ========  ===================================  =============

    Task sizes at default: 80-120 participants, 40-50% of them with a second session.
    The internal tasks' datasets (``clin_a``, ``clin_b``, ``clin_c``) are part of the
    pretraining corpus of :func:`make_default_synthetic`; the external ones (``ext_d``,
    ``ext_e``) and their sites are not. With ``smoke=True``, 12 participants per site.
    """
    atlas = load_atlas("schaefer100_7")
    hubs = tuple(
        int(i)
        for i in atlas.roi_indices(
            ["LH_Limbic_TempPole_1", "RH_Limbic_TempPole_1", "LH_Limbic_OFC_1", "RH_Limbic_OFC_1",
             "LH_Default_pCunPCC_1", "RH_Default_pCunPCC_1", "LH_Default_PFC_1",
             "RH_Default_PFCv_1"]
        )
    )  # fmt: skip
    cfg = [
        TaskConfig(
            "dmn_hyperconnectivity",
            DatasetSpec(
                "clin_a",
                (
                    SiteSpec("clin_a-1", 2.0, 180, noise=0.4, global_signal=0.3, gradient=0.2,
                             baseline=500, scale=5),
                    SiteSpec("clin_a-2", 1.0, 300, noise=0.35, global_signal=0.25, gradient=-0.1),
                ),
                (50, 50),
                session_probs=(0.6, 0.4),
                age_range=(20, 60),
                patient_fraction=(0.5, 0.5),
            ),
            PlantedEffect.within("Default", 0.12),
        ),
        TaskConfig(
            "salience_control_decoupling",
            DatasetSpec(
                "clin_b",
                (
                    SiteSpec("clin_b-1", 2.0, 200, noise=0.45, global_signal=0.45, gradient=0.3,
                             baseline=1000, scale=10),
                    SiteSpec("clin_b-2", 1.5, 240, noise=0.4, global_signal=0.3, gradient=0.0),
                    SiteSpec("clin_b-3", 0.8, 360, noise=0.35, global_signal=0.15, gradient=-0.3,
                             baseline=300, scale=3, length_jitter=15),
                ),
                (30, 30, 30),
                session_probs=(0.5, 0.5),
                age_range=(18, 65),
                patient_fraction=(0.7, 0.5, 0.3),
            ),
            PlantedEffect.between("SalVentAttn", "Cont", -0.06),
        ),
        TaskConfig(
            "sommot_weak",
            DatasetSpec(
                "clin_c",
                (
                    SiteSpec("clin_c-1", 0.8, 350, noise=0.35, global_signal=0.2, gradient=0.1),
                    SiteSpec("clin_c-2", 2.2, 160, noise=0.45, global_signal=0.35, gradient=-0.2,
                             baseline=700, scale=7),
                ),
                (60, 60),
                session_probs=(0.5, 0.5),
                age_range=(18, 70),
                patient_fraction=(0.5, 0.5),
            ),
            PlantedEffect.within("SomMot", -0.04),
        ),
        TaskConfig(
            "limbic_default_hubs",
            DatasetSpec(
                "ext_d",
                (
                    SiteSpec("ext_d-1", 1.0, 300, noise=0.4, global_signal=0.3, gradient=0.4,
                             baseline=1500, scale=15),
                    SiteSpec("ext_d-2", 2.5, 150, noise=0.5, global_signal=0.4, gradient=-0.4),
                ),
                (40, 40),
                session_probs=(0.5, 0.5),
                age_range=(25, 75),
                patient_fraction=(0.5, 0.5),
            ),
            PlantedEffect.hubs(hubs, 0.25),
        ),
        TaskConfig(
            "visual_confounded",
            DatasetSpec(
                "ext_e",
                (
                    SiteSpec("ext_e-1", 2.0, 150, noise=0.6, global_signal=0.55, gradient=0.5,
                             baseline=3000, scale=30),
                    SiteSpec("ext_e-2", 1.2, 250, noise=0.45, global_signal=0.3, gradient=0.0),
                    SiteSpec("ext_e-3", 0.72, 380, noise=0.3, global_signal=0.1, gradient=-0.5,
                             baseline=200, scale=2),
                ),
                (30, 30, 30),
                session_probs=(0.5, 0.5),
                age_range=(18, 50),
                patient_fraction=(0.85, 0.5, 0.15),
            ),
            PlantedEffect.within("Vis", -0.04),
        ),
    ]  # fmt: skip
    if smoke:
        cfg = [replace(c, dataset=_smoke_scale(c.dataset, 12)) for c in cfg]
    return cfg


#: Datasets of the internal tasks, which join the pretraining corpus.
INTERNAL_TASK_DATASETS: tuple[str, ...] = ("clin_a", "clin_b", "clin_c")


def make_default_synthetic(seed: int | None = 0, smoke: bool = False) -> SyntheticData:
    """The embedded default cohort: a pretraining corpus and five labelled diagnosis tasks.

    Parameters
    ----------
    seed : int or None, default 0
        Same seed, same data (bit for bit).
    smoke : bool, default False
        A few hundred scans with small tasks (about a second) instead of ~3,100 scans.

    Returns
    -------
    SyntheticData
        ``pretraining_datasets`` holds the four pretraining-only datasets and the three
        internal tasks' datasets; the two external tasks' datasets and sites are outside it.
    """
    if not isinstance(smoke, bool):
        raise TypeError(f"expected smoke to be a bool, got {type(smoke).__name__}")
    seed = _check_seed(seed)
    corpus = make_pretraining_corpus(seed=seed, smoke=smoke)
    tasks = make_diagnosis_tasks(seed=seed, smoke=smoke)
    return combine([corpus, tasks], [*corpus.pretraining_datasets, *INTERNAL_TASK_DATASETS])
