"""Tests for bmlib.pfc: pseudo-FC views, determinism, refusals, collate and dataset helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bmlib.connectivity import ConstantSeriesError, batch_fc
from bmlib.pfc import (
    DEFAULT_MIN_TIMEPOINTS,
    PFCCollate,
    TwoViewDataset,
    make_views,
    pad_series,
    view_indices,
    view_similarity,
)


def _batch(lengths: list[int], n_rois: int = 10, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    series = [torch.randn(t, n_rois, generator=g, dtype=dtype) @ torch.randn(n_rois, n_rois, generator=g, dtype=dtype)
              + 9500.0 for t in lengths]
    return pad_series(series, dtype=dtype)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_drop_views_equal_fc_of_kept_timepoints() -> None:
    lengths = [200, 150, 61, 200]
    x, lt = _batch(lengths)
    views, idx = make_views(x, lt, n_views=3, generator=_gen(1), return_indices=True)
    assert views.shape == (3, 4, 10, 10) and views.dtype == torch.float64
    assert torch.equal(views, views.mT)  # exactly symmetric
    expected_counts = [t - round(0.2 * t) for t in lengths]
    assert idx.counts.tolist() == [expected_counts] * 3
    for v in range(3):
        for i, t in enumerate(lengths):
            kept = idx.kept(v, i)
            assert len(kept) == expected_counts[i]
            assert bool((kept[1:] > kept[:-1]).all()) and int(kept.max()) < t  # order kept, no padding
            ref = np.corrcoef(x[i, kept].numpy().T)
            np.testing.assert_allclose(views[v, i].numpy(), ref, atol=1e-10)


def test_drop_counts_use_round_half_even() -> None:
    # 0.2 * 62.5 would be ambiguous; 0.25 * 50 = 12.5 -> 12 (half to even), 0.25 * 54 = 13.5 -> 14
    idx = view_indices([50, 54, 40], n_views=1, drop_fraction=0.25, generator=_gen(0))
    assert idx.counts[0].tolist() == [38, 40, 30]


def test_drop_fraction_zero_equals_fc() -> None:
    x, lt = _batch([120, 80, 33], seed=2)
    views = make_views(x, lt, drop_fraction=0.0, generator=_gen(0))
    fc = batch_fc(x, lt)
    assert torch.equal(views[0], fc) and torch.equal(views[1], fc)


def test_views_are_float32_by_default_and_float64_on_request() -> None:
    x32, lt = _batch([100, 90], dtype=torch.float32, seed=3)
    v32 = make_views(x32, lt, generator=_gen(0))
    v64 = make_views(x32.double(), lt, generator=_gen(0))
    assert v32.dtype == torch.float32 and v64.dtype == torch.float64
    torch.testing.assert_close(v32.double(), v64, atol=2e-6, rtol=0)  # same draws, same views


def test_same_seed_same_views_different_seed_different_views() -> None:
    x, lt = _batch([150, 150, 90], seed=4)
    a = make_views(x, lt, generator=_gen(7))
    b = make_views(x, lt, generator=_gen(7))
    c = make_views(x, lt, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_views_are_independent_across_scans_and_views() -> None:
    g = torch.Generator().manual_seed(5)
    scan = torch.randn(100, 6, generator=g, dtype=torch.float64)
    x = scan.expand(4, 100, 6).contiguous()  # four identical scans
    _, idx = make_views(x, n_views=2, generator=_gen(0), return_indices=True)
    kept = {tuple(idx.kept(v, i).tolist()) for v in range(2) for i in range(4)}
    assert len(kept) == 8  # every (view, scan) drew its own subset


def test_drop_is_uniform_over_timepoints() -> None:
    # each valid timepoint is dropped with probability 0.2; padding is never used
    idx = view_indices(torch.tensor([50, 30]), n_views=2000, drop_fraction=0.2, generator=_gen(6))
    for i, t in enumerate([50, 30]):
        dropped = np.ones((2000, t), dtype=bool)
        rows = np.repeat(np.arange(2000), int(idx.counts[0, i]))
        dropped[rows, idx.index[:, i, : int(idx.counts[0, i])].reshape(-1).numpy()] = False
        freq = dropped.mean(0)
        assert dropped.sum(1).tolist() == [round(0.2 * t)] * 2000
        assert np.abs(freq - 0.2).max() < 0.035  # ~4 standard errors at n=2000


def test_padding_content_is_ignored() -> None:
    x, lt = _batch([80, 40], seed=7)
    y = x.clone()
    y[1, 40:] = 12345.0
    torch.testing.assert_close(make_views(x, lt, generator=_gen(1)),
                               make_views(y, lt, generator=_gen(1)), atol=1e-12, rtol=0)


def test_crop_views_are_contiguous_windows() -> None:
    lengths = [100, 60, 100]
    x, lt = _batch(lengths, seed=8)
    views, idx = make_views(x, lt, mode="crop", crop_length=40, n_views=4, generator=_gen(2),
                            return_indices=True)
    assert idx.counts.unique().tolist() == [40]
    starts = set()
    for v in range(4):
        for i, t in enumerate(lengths):
            kept = idx.kept(v, i)
            assert torch.equal(kept, torch.arange(int(kept[0]), int(kept[0]) + 40))
            assert int(kept[-1]) < t
            starts.add(int(kept[0]))
            np.testing.assert_allclose(views[v, i].numpy(), np.corrcoef(x[i, kept].numpy().T), atol=1e-10)
    assert len(starts) > 4  # random starts


def test_crop_fraction_scales_with_each_scan() -> None:
    x, lt = _batch([100, 50], seed=9)
    _, idx = make_views(x, lt, mode="crop", crop_length=0.5, generator=_gen(0), return_indices=True)
    assert idx.counts[0].tolist() == [50, 25]


def test_refuses_drop_that_leaves_too_few_timepoints() -> None:
    x, lt = _batch([200, 30, 200], seed=10)
    with pytest.raises(ValueError, match=r"scan 1 has 30 timepoints; dropping drop_fraction=0.5 of them \(15\) "
                                         r"leaves 15, fewer than min_timepoints=20"):
        make_views(x, lt, drop_fraction=0.5)
    # allowed when the caller lowers the minimum
    assert make_views(x, lt, drop_fraction=0.5, min_timepoints=10, generator=_gen(0)).shape == (2, 3, 10, 10)


def test_refuses_crops_that_do_not_fit() -> None:
    x, lt = _batch([200, 30], seed=11)
    with pytest.raises(ValueError, match=r"scan 1 has 30 timepoints, fewer than crop_length=50"):
        make_views(x, lt, mode="crop", crop_length=50)
    with pytest.raises(ValueError, match=r"crop_length=10 is below min_timepoints=20"):
        make_views(x, lt, mode="crop", crop_length=10)
    with pytest.raises(ValueError, match=r"scan 1 has 30 timepoints; crop_length=0.5 \(a fraction\) keeps 15, "
                                         r"fewer than min_timepoints=20"):
        make_views(x, lt, mode="crop", crop_length=0.5)
    with pytest.raises(ValueError, match=r"mode='crop' needs crop_length"):
        make_views(x, lt, mode="crop")


@pytest.mark.parametrize("kwargs,match", [
    ({"drop_fraction": 1.0}, r"drop_fraction must be in \[0, 1\), got 1.0"),
    ({"n_views": 0}, r"n_views must be a positive integer, got 0"),
    ({"mode": "mask"}, r"mode must be one of \['drop', 'crop'\], got 'mask'"),
    ({"min_timepoints": 1}, r"min_timepoints must be an integer >= 2"),
    ({"mode": "crop", "crop_length": 1.5}, r"a float crop_length is a fraction of each scan and must be in \(0, 1\]"),
])
def test_option_checks(kwargs: dict, match: str) -> None:
    x, lt = _batch([50], seed=12)
    with pytest.raises(ValueError, match=match):
        make_views(x, lt, **kwargs)


def test_input_checks() -> None:
    with pytest.raises(ValueError, match=r"expected 3D array \(batch, n_timepoints, n_rois\), got shape \(50, 4\)"):
        make_views(torch.randn(50, 4))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 60 is out of range"):
        make_views(torch.randn(1, 50, 4), lengths=[60])


def test_constant_roi_within_a_view_is_reported() -> None:
    x, lt = _batch([60, 60], seed=13)
    x[1, :, 2] = 3.0
    with pytest.raises(ConstantSeriesError, match=r"sample 1 \(pFC view 0\): 1 constant ROI time series \(ROIs \[2\]\)"):
        make_views(x, lt, generator=_gen(0))
    views = make_views(x, lt, generator=_gen(0), constant="zero")
    assert torch.isfinite(views).all() and float(views[:, 1, 2, :2].abs().sum()) == 0.0


def test_fisher_z_views() -> None:
    x, lt = _batch([80], seed=14)
    r = make_views(x, lt, generator=_gen(3))
    z = make_views(x, lt, generator=_gen(3), fisher_z=True)
    off = ~torch.eye(10, dtype=torch.bool)
    torch.testing.assert_close(z[..., off], torch.atanh(r[..., off]))
    assert torch.isfinite(z).all()


def test_autograd_through_views() -> None:
    x, lt = _batch([70, 50], n_rois=4, seed=15)
    x.requires_grad_()
    v = make_views(x, lt, generator=_gen(4))
    with torch.no_grad():
        ref = make_views(x, lt, generator=_gen(4))
    torch.testing.assert_close(v, ref, atol=1e-12, rtol=0)
    v[:, :, 0, 1].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cpu_generator_gives_same_views_on_cuda() -> None:
    x, lt = _batch([100, 80], seed=16)
    cpu = make_views(x, lt, generator=_gen(5))
    gpu = make_views(x.cuda(), lt.cuda(), generator=_gen(5))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- padding, collate, dataset
def test_pad_series_pads_with_zeros() -> None:
    x, lengths = pad_series([np.ones((3, 2)), 2 * np.ones((5, 2))], dtype=torch.float64)
    assert x.shape == (2, 5, 2) and x.dtype == torch.float64
    assert lengths.tolist() == [3, 5] and lengths.dtype == torch.int64
    assert float(x[0, 3:].abs().sum()) == 0.0 and float(x[1].min()) == 2.0
    with pytest.raises(ValueError, match=r"series\[1\] has 3 ROIs, expected 2 like series\[0\]"):
        pad_series([np.ones((3, 2)), np.ones((3, 3))])
    with pytest.raises(ValueError, match=r"expected at least one time series, got an empty list"):
        pad_series([])


def test_collate_pads_items_and_stacks_fields() -> None:
    items = [{"x": torch.full((4, 3), 1.0), "index": 7, "label": 1, "site": "A", "w": torch.ones(2)},
             {"x": torch.full((6, 3), 2.0), "index": 9, "label": 0, "site": "B", "w": torch.ones(2)}]
    batch = PFCCollate()(items)
    assert batch["x"].shape == (2, 6, 3) and batch["x"].dtype == torch.float32
    assert batch["lengths"].tolist() == [4, 6]
    assert float(batch["x"][0, 4:].abs().sum()) == 0.0
    assert batch["index"].tolist() == [7, 9] and batch["label"].tolist() == [1, 0]
    assert batch["site"] == ["A", "B"] and batch["w"].shape == (2, 2)
    bare = PFCCollate(dtype=torch.float64)([np.ones((5, 3)), np.ones((3, 3))])
    assert bare["x"].dtype == torch.float64 and bare["index"].tolist() == [0, 1]
    with pytest.raises(KeyError, match=r"batch item 1 has no 'x' entry"):
        PFCCollate()([{"x": np.ones((3, 3))}, {"y": 1}])


def test_collate_feeds_make_views_through_a_dataloader() -> None:
    g = torch.Generator().manual_seed(17)
    data = [{"x": torch.randn(t, 5, generator=g), "index": i} for i, t in enumerate([40, 90, 60, 75])]
    loader = DataLoader(data, batch_size=4, collate_fn=PFCCollate())
    batch = next(iter(loader))
    views = make_views(batch["x"], batch["lengths"], generator=_gen(0))
    assert views.shape == (2, 4, 5, 5)
    torch.testing.assert_close(make_views(batch["x"], batch["lengths"], drop_fraction=0.0)[0],
                               torch.stack([batch_fc(d["x"][None])[0] for d in data]), atol=1e-6, rtol=0)


def test_two_view_dataset_is_reproducible_and_changes_per_epoch() -> None:
    g = torch.Generator().manual_seed(18)
    data = [{"x": torch.randn(80, 6, generator=g), "index": i, "label": i % 2} for i in range(3)]
    ds = TwoViewDataset(data, seed=1)
    a = ds[1]
    assert a["views"].shape == (2, 6, 6) and a["label"] == 1 and a["index"] == 1
    assert torch.equal(a["views"], TwoViewDataset(data, seed=1)[1]["views"])
    assert not torch.equal(a["views"][0], a["views"][1])
    assert not torch.equal(a["views"], ds[2]["views"])
    ds.set_epoch(1)
    assert not torch.equal(a["views"], ds[1]["views"])
    assert len(ds) == 3
    assert DEFAULT_MIN_TIMEPOINTS == 20


def test_views_do_not_depend_on_torch_threads() -> None:
    x, lt = _batch([300, 240, 100], seed=19, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = make_views(x, lt, generator=_gen(9))
        torch.set_num_threads(2)
        two = make_views(x, lt, generator=_gen(9))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, two, atol=1e-6, rtol=0)


def _drop_reference(keys: torch.Tensor, lengths: torch.Tensor, n_drop: torch.Tensor) -> list[list[list[int]]]:
    """Kept rows by the documented rule: drop the n_drop smallest (key, position) pairs."""
    out = []
    for kv in keys.numpy():
        rows = []
        for b, (n, nd) in enumerate(zip(lengths.tolist(), n_drop.tolist())):
            order = np.lexsort((np.arange(n), kv[b, :n]))  # by key, then position
            rows.append(sorted(set(range(n)) - set(order[:nd].tolist())))
        out.append(rows)
    return out


@pytest.mark.parametrize("numba", ["1", "0"])
def test_drop_views_break_ties_by_position(monkeypatch: pytest.MonkeyPatch, numba: str) -> None:
    monkeypatch.setenv("BMLIB_NUMBA", numba)
    lengths = torch.tensor([50, 37, 64, 20])
    coarse = torch.Generator().manual_seed(5)
    keys = torch.randint(0, 6, (3, 4, 64), generator=coarse).float() / 6  # many equal keys
    monkeypatch.setattr(torch, "rand", lambda *a, **k: keys.clone())
    idx = view_indices(lengths, 64, n_views=3, drop_fraction=0.3, min_timepoints=10, generator=_gen(0))
    n_drop = torch.round(lengths.double() * 0.3).long()
    ref = _drop_reference(keys, lengths, n_drop)
    for v in range(3):
        for b in range(4):
            assert idx.kept(v, b).tolist() == ref[v][b]
            assert idx.index[v, b, int(idx.counts[v, b]):].eq(0).all()  # zeros after the kept rows


def test_compiled_and_torch_view_indices_are_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    lengths = torch.tensor([1200, 200, 431, 64, 999, 1200])
    for seed, fraction, n_views in [(0, 0.2, 2), (1, 0.5, 3), (2, 0.01, 1), (3, 0.0, 2)]:
        monkeypatch.setenv("BMLIB_NUMBA", "1")
        fused = view_indices(lengths, 1300, n_views=n_views, drop_fraction=fraction, generator=_gen(seed))
        monkeypatch.setenv("BMLIB_NUMBA", "0")
        plain = view_indices(lengths, 1300, n_views=n_views, drop_fraction=fraction, generator=_gen(seed))
        assert torch.equal(fused.index, plain.index) and torch.equal(fused.counts, plain.counts)


# ----------------------------------------------------------------------------- view_similarity
def test_view_similarity_matches_direct_correlation_of_each_view() -> None:
    x, lengths = _batch([150, 120, 90])
    table = view_similarity(x, lengths, drop_fractions=[0.3], n_views=4, seed=3, sample_ids=["a", "b", "c"])
    views = make_views(x, lengths, n_views=4, drop_fraction=0.3, generator=_gen(3))
    full = batch_fc(x, lengths)
    iu = np.triu_indices(10, 1)
    for row in table.itertuples():
        scan = ["a", "b", "c"].index(row.sample)
        expected = np.corrcoef(views[row.view, scan].numpy()[iu], full[scan].numpy()[iu])[0, 1]
        assert row.r_to_full_fc == pytest.approx(expected, abs=1e-10)
        assert row.n_kept == [150, 120, 90][scan] - round(0.3 * [150, 120, 90][scan])
    assert len(table) == 12 and set(table.columns) == {"sample", "drop_fraction", "view", "n_kept", "r_to_full_fc"}


def test_view_similarity_falls_as_more_timepoints_are_dropped() -> None:
    x, lengths = _batch([300, 300, 250], seed=1)
    table = view_similarity(x, lengths, drop_fractions=[0.0, 0.1, 0.3, 0.6], n_views=10)
    means = table.groupby("drop_fraction")["r_to_full_fc"].mean()
    assert means.loc[0.0] == pytest.approx(1.0, abs=1e-12)
    assert means.is_monotonic_decreasing and means.loc[0.6] < means.loc[0.1] - 0.01


def test_view_similarity_is_seeded() -> None:
    x, lengths = _batch([100, 80])
    a = view_similarity(x, lengths, drop_fractions=[0.2, 0.4], n_views=3, seed=5)
    b = view_similarity(x, lengths, drop_fractions=[0.2, 0.4], n_views=3, seed=5)
    c = view_similarity(x, lengths, drop_fractions=[0.2, 0.4], n_views=3, seed=6)
    assert a.equals(b) and not np.allclose(a["r_to_full_fc"], c["r_to_full_fc"])


def test_view_similarity_crop_mode_and_input_checks() -> None:
    x, lengths = _batch([100, 60])
    table = view_similarity(x, lengths, mode="crop", crop_lengths=[30, 0.5], n_views=2)
    assert table.groupby("crop_length")["n_kept"].apply(sorted).to_dict() == {0.5: [30, 30, 50, 50], 30.0: [30] * 4}
    with pytest.raises(ValueError, match="at least one"):
        view_similarity(x, lengths, drop_fractions=[])
    with pytest.raises(ValueError, match="2 sample_ids"):
        view_similarity(x, lengths, sample_ids=["only-one"])
    with pytest.raises(ValueError, match="n_views"):
        view_similarity(x, lengths, n_views=0)
    with pytest.raises(ValueError, match="has 100 timepoints"):  # 90% dropped leaves 10 < 20
        view_similarity(x, lengths, drop_fractions=[0.9])
