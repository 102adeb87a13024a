"""Tests of bmlib.plotting, headless (Agg): returned objects, axes=, saving only on request."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bmlib import interpret as I  # noqa: E402
from bmlib import plotting as P  # noqa: E402
from bmlib.data.atlases import load_atlas  # noqa: E402

R = 100


@pytest.fixture(scope="module")
def atlas():
    return load_atlas("schaefer100_7")


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return np.random.default_rng(0).normal(size=R)


@pytest.fixture(scope="module")
def edges() -> np.ndarray:
    e = np.random.default_rng(1).normal(size=(R, R))
    e = (e + e.T) / 2
    np.fill_diagonal(e, 0)
    return e


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_network_colors_and_order(atlas):
    colors = P.network_colors(atlas)
    assert list(colors) == list(atlas.network_names) and len(set(colors.values())) == 7
    order = P.network_order(atlas)
    nets = np.asarray(atlas.networks)[order]
    # every network's ROIs are contiguous after ordering
    assert sum(nets[i] != nets[i + 1] for i in range(R - 1)) == 6
    assert sorted(order.tolist()) == list(range(R))


def test_select_top_edges(edges):
    kept = P.select_top_edges(edges, top_k=5)
    assert (np.triu(kept, 1) != 0).sum() == 5 and np.allclose(kept, kept.T)
    strongest = np.sort(np.abs(edges[np.triu_indices(R, 1)]))[-5:]
    np.testing.assert_allclose(np.sort(np.abs(kept[np.triu_indices(R, 1)]))[-5:], strongest)
    thr = P.select_top_edges(edges, threshold=2.0)
    assert np.all((np.abs(thr) >= 2.0) | (thr == 0))
    with pytest.raises(ValueError, match=r"edge_matrix of shape \(n_rois, n_rois\)"):
        P.select_top_edges(np.zeros((3, 4)))


def test_plot_roi_markers_axes_and_saving(tmp_path, atlas, values):
    fig, ax = plt.subplots(figsize=(8, 3))
    display = P.plot_roi_markers(values, atlas, axes=ax, title="t", top_k=10)
    assert display.frame_axes is ax
    assert _files(tmp_path) == []  # nothing saved without output_file
    out = tmp_path / "markers.png"
    d2 = P.plot_roi_markers(values, atlas, threshold=1.0, output_file=out)
    assert d2 is not None and out.stat().st_size > 1000
    assert _files(tmp_path) == ["markers.png"]
    with pytest.raises(ValueError, match=r"one value per atlas ROI \(100 ROIs\), got 50"):
        P.plot_roi_markers(values[:50], atlas)
    with pytest.raises(ValueError, match="no ROI passes the selection"):
        P.plot_roi_markers(values, atlas, threshold=100.0)
    with pytest.raises(ValueError, match="finite values"):
        P.plot_roi_markers(np.full(R, np.nan), atlas)


def test_plot_top_edges(tmp_path, atlas, edges):
    fig, ax = plt.subplots(figsize=(8, 3))
    display = P.plot_top_edges(edges, atlas, top_k=15, axes=ax)
    assert display.frame_axes is ax
    assert _files(tmp_path) == []
    P.plot_top_edges(edges, atlas, threshold=2.5, output_file=tmp_path / "edges.svg")
    assert (tmp_path / "edges.svg").read_text().lstrip().startswith("<?xml")


def test_plot_network_matrix(tmp_path, atlas, edges):
    fig, ax = plt.subplots()
    out_ax = P.plot_network_matrix(edges, atlas, axes=ax, title="FC")
    assert out_ax is ax
    assert [t.get_text() for t in ax.get_xticklabels()] == list(atlas.network_names)
    image = ax.get_images()[0].get_array()
    order = P.network_order(atlas)
    np.testing.assert_allclose(np.asarray(image), edges[np.ix_(order, order)])
    assert len(ax.lines) == 12  # 6 boundaries, horizontal + vertical
    assert _files(tmp_path) == []
    P.plot_network_matrix(edges, atlas, output_file=tmp_path / "m.png")
    assert _files(tmp_path) == ["m.png"]


def test_plot_network_pairs_and_bars(tmp_path, atlas, edges):
    pairs = I.network_pair_importance(edges, atlas)
    pvals = pd.DataFrame(np.ones((7, 7)), index=pairs.index, columns=pairs.columns)
    pvals.loc["Vis", "Default"] = 0.01
    fig, ax = plt.subplots()
    assert P.plot_network_pairs(pairs, p_values=pvals, axes=ax) is ax
    assert [t.get_text() for t in ax.texts] == ["*"]
    df = pd.DataFrame(
        {"network": list(atlas.network_names), "importance": np.arange(7.0) - 2, "p_value": [0.01] + [0.5] * 6}
    )
    fig, ax = plt.subplots()
    assert P.plot_network_bars(df, axes=ax, palette=P.network_colors(atlas)) is ax
    assert len(ax.patches) == 7
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.arange(7.0) - 2)
    assert ax.texts[0].get_text().startswith("*p=") and not ax.texts[1].get_text().startswith("*")
    series = I.network_importance(np.arange(R, dtype=float), atlas)
    ax2 = P.plot_network_bars(series, p_col=None, output_file=tmp_path / "bars.png")
    assert len(ax2.patches) == 7 and _files(tmp_path) == ["bars.png"]
    with pytest.raises(ValueError, match="expected columns 'network' and 'importance'"):
        P.plot_network_bars(df.rename(columns={"importance": "x"}))
    with pytest.raises(ValueError, match="square DataFrame"):
        P.plot_network_pairs(pairs.iloc[:3])


def test_html_views(tmp_path, atlas, values, edges):
    view = P.view_roi_markers(values, atlas, top_k=12, title="markers")
    html = view.get_standalone()
    assert "LH_Vis_1" in html or "RH_" in html
    out = P.save_figure(view, tmp_path / "markers.html")
    assert out.read_text().count("<html") >= 1
    cview = P.view_top_edges(edges, atlas, top_k=10)
    P.save_figure(cview, tmp_path / "edges.html")
    assert _files(tmp_path) == ["edges.html", "markers.html"]
    with pytest.raises(ValueError, match="expected a .html path"):
        P.save_figure(cview, tmp_path / "edges.png")


def test_brain_3d_hover_and_mesh(atlas, values, edges):
    fig = P.brain_3d(values, atlas, edge_matrix=edges, top_k_edges=5, title="3d")
    kinds = [t.type for t in fig.data]
    assert kinds == ["mesh3d", "mesh3d", "scatter3d", "scatter3d"]
    markers = fig.data[-1]
    assert len(markers.x) == R
    assert markers.customdata[0][0] == atlas.labels[0] and markers.customdata[0][1] == atlas.networks[0]
    assert "network" in markers.hovertemplate and "importance" in markers.hovertemplate
    lines = fig.data[2]
    assert sum(v is None for v in lines.x) == 5  # 5 edges, separated by None
    bare = P.brain_3d(values, atlas, surface=False, threshold=1.0)
    assert [t.type for t in bare.data] == ["scatter3d"]
    assert len(bare.data[0].x) == int((np.abs(values) >= 1.0).sum())


def test_fc_views_figure(atlas, edges):
    views = np.stack([edges * 0.9, edges * 1.1])
    fig = P.fc_views_figure(edges, views, atlas=atlas)
    assert len(fig.data) == 3 and all(t.type == "heatmap" for t in fig.data)
    order = P.network_order(atlas)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), edges[np.ix_(order, order)])
    assert [a.text for a in fig.layout.annotations] == ["FC", "pFC view 1", "pFC view 2"]
    with pytest.raises(ValueError, match=r"views of shape \(n_views, 100, 100\)"):
        P.fc_views_figure(edges, np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="expected 3 titles"):
        P.fc_views_figure(edges, views, titles=["a"])


def test_save_figure_formats(tmp_path, atlas, values):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert P.save_figure(fig, tmp_path / "f.png").stat().st_size > 0
    assert P.save_figure(ax, tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    pfig = P.brain_3d(values, atlas, surface=False)
    html = P.save_figure(pfig, tmp_path / "b.html").read_text()
    assert "plotly" in html.lower() and "LH_Vis_1" in html
    with pytest.raises(ValueError, match="with a suffix"):
        P.save_figure(fig, tmp_path / "noext")
    with pytest.raises(TypeError, match="matplotlib, nilearn or plotly"):
        P.save_figure(object(), tmp_path / "x.png")


def test_save_figure_plotly_png_is_optional(tmp_path, atlas, values, monkeypatch):
    import plotly.graph_objects as go

    def broken(self, *a, **k):
        raise RuntimeError("no chrome")

    monkeypatch.setattr(go.Figure, "write_image", broken)
    pfig = P.brain_3d(values, atlas, surface=False)
    with pytest.raises(RuntimeError, match="save as .html instead"):
        P.save_figure(pfig, tmp_path / "b.png")
    with pytest.warns(RuntimeWarning, match="no chrome"):
        assert P.save_figure(pfig, tmp_path / "b.png", strict=False) is None
    assert _files(tmp_path) == []  # no partial or temporary file left


def test_interpretation_explorer_redraws(atlas, values, edges):
    rng = np.random.default_rng(0)
    per_subject = I.ImportanceMap("occlusion", rng.normal(size=(6, R)))
    grad = I.ImportanceMap("gradient", rng.normal(size=(6, R)), np.stack([edges] * 6))
    maps = {
        "task_a": {"occlusion": per_subject, "gradient": grad},
        "task_b": {"univariate": I.GroupMap("univariate", values, edges)},
    }
    labels = {"task_a": np.array([0, 0, 0, 1, 1, 1])}
    box = P.interpretation_explorer(maps, atlas, labels=labels, truth={"task_b": [0, 1]})
    c = box.controls
    assert box.last_title == "task_a | occlusion | group"
    assert list(c["subject"].options) == ["group", "0", "1", "2", "3", "4", "5"]
    first = box.last_figure
    c["subject"].value = "3"
    assert box.last_title == "task_a | occlusion | 3" and box.last_figure is not first
    c["method"].value = "gradient"
    c["view"].value = "edges"
    assert box.last_title == "task_a | gradient | 3"
    c["threshold"].value = 0.5
    c["view"].value = "networks"
    assert len(box.last_figure.axes[0].patches) == 7
    c["task"].value = "task_b"
    assert list(c["method"].options) == ["univariate"] and list(c["subject"].options) == ["group"]
    assert box.last_title.startswith("task_b | univariate | group | planted shown")
    assert plt.get_fignums() == []  # drawn outside pyplot: the inline backend never shows them twice
    with pytest.raises(ValueError, match="at least one task"):
        P.interpretation_explorer({}, atlas)


def test_pfc_explorer_redraws_views_for_subject_fraction_and_seed(atlas):
    import torch

    from bmlib.pfc import make_views

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 150, R, generator=g, dtype=torch.float64)
    lengths = [150, 120, 100]
    box = P.pfc_explorer(x, lengths, atlas=atlas, sample_ids=["s0", "s1", "s2"], n_views=2, seed=4)
    c = box.controls
    assert c["drop_fraction"].max == 0.8  # 20 of the shortest scan's 100 timepoints must stay
    assert len(box.last_figure.axes) == 3 and "s0" in box.info.value and "120 of 150" in box.info.value
    expected = make_views(x[:1], lengths[:1], n_views=2, drop_fraction=0.2, generator=torch.Generator().manual_seed(4))
    assert np.allclose(box.last_views, expected[:, 0].numpy())
    first = box.last_figure
    mild = box.last_similarity.copy()
    c["drop_fraction"].value = 0.8
    assert "30 of 150" in box.info.value and box.last_similarity.mean() < mild.mean()
    assert box.last_figure is not first and plt.get_fignums() == []  # drawn outside pyplot: nothing shown twice
    c["subject"].value = 2
    assert "s2" in box.info.value and "20 of 100" in box.info.value
    before = box.last_similarity.copy()
    c["seed"].value = 5
    assert not np.allclose(before, box.last_similarity)
    with pytest.raises(ValueError, match="drop_fraction in"):
        P.pfc_explorer(x, lengths, drop_fraction=0.85)
    with pytest.raises(ValueError, match="3 sample_ids"):
        P.pfc_explorer(x, lengths, sample_ids=["a"])
    with pytest.raises(ValueError, match="shape"):
        P.pfc_explorer(x[0], None)

def test_plot_map_vs_truth(tmp_path, atlas, values):
    truth = np.zeros(R)
    truth[[3, 40, 77]] = [0.5, 1.0, 0.5]
    fig = P.plot_map_vs_truth(values, truth, atlas, output_file=tmp_path / "vs.png")
    assert len(fig.axes) >= 2 and _files(tmp_path) == ["vs.png"]
    with pytest.raises(ValueError, match="at least one planted ROI"):
        P.plot_map_vs_truth(values, np.zeros(R), atlas)
    with pytest.raises(ValueError, match=r"truth of shape \(100,\)"):
        P.plot_map_vs_truth(values, np.ones(5), atlas)


def test_plot_recovery(tmp_path):
    table = pd.DataFrame({"method": ["occlusion", "univariate"], "roi_auc": [0.7, 0.95], "edge_auc": [np.nan, 0.9],
                          "roi_top_k_precision": [0.4, 0.8], "roi_chance": [0.1, 0.1]})  # fmt: skip
    fig, ax = plt.subplots()
    assert P.plot_recovery(table, axes=ax) is ax
    heights = sorted(round(p.get_height(), 2) for p in ax.patches if p.get_height() > 0)
    assert heights == [0.7, 0.9, 0.95]
    assert sorted(line.get_ydata()[0] for line in ax.lines) == [0.5]
    ax2 = P.plot_recovery(table, metrics=["roi_top_k_precision"], output_file=tmp_path / "r.png")
    assert sorted(line.get_ydata()[0] for line in ax2.lines) == [0.1] and _files(tmp_path) == ["r.png"]
    with pytest.raises(ValueError, match="missing \\['edge_auc'\\]"):
        P.plot_recovery(table.drop(columns="edge_auc"))


def _task_set(values: np.ndarray) -> tuple[dict, dict]:
    """Two tasks' group maps (two methods) and planted truths, as interpret_tasks returns them."""
    rng = np.random.default_rng(2)
    truth = {"task_a": np.zeros(R), "task_b": np.zeros(R)}
    truth["task_a"][[3, 40, 77]] = [0.5, 1.0, 0.5]
    truth["task_b"][:10] = 1.0
    maps = {t: {"occlusion": I.GroupMap("occlusion", values + 3 * truth[t]),
                "gradient": I.GroupMap("gradient", np.abs(rng.normal(size=R)))} for t in truth}  # fmt: skip
    return maps, {t: I.GroupMap("truth", v) for t, v in truth.items()}


def test_plot_maps_vs_truth_grid_strip(tmp_path, atlas, values):
    maps, truth = _task_set(values)
    fig = P.plot_maps_vs_truth_grid(maps, truth, atlas, style="strip", title="maps")
    assert _files(tmp_path) == []  # nothing saved without output_file
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2 and [ax.get_title(loc="left") for ax in panels] == ["task_a", "task_b"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["planted truth", "occlusion", "gradient"]
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == list(atlas.network_names)
    order = P.network_order(atlas)
    image = np.asarray(panels[0].get_images()[0].get_array())
    assert image.shape == (3, R)
    np.testing.assert_allclose(image[0], truth["task_a"].roi[order] / 1.0)  # |truth| / max
    occ = maps["task_a"]["occlusion"].roi
    np.testing.assert_allclose(image[1], np.abs(occ[order]) / np.abs(occ).max())
    only = P.plot_maps_vs_truth_grid(maps, truth, atlas, methods=["gradient"], style="strip",
                                     output_file=tmp_path / "strip.png")  # fmt: skip
    assert [t.get_text() for t in only.axes[0].get_yticklabels()] == ["planted truth", "gradient"]
    assert _files(tmp_path) == ["strip.png"]


def test_plot_maps_vs_truth_grid_glass_and_errors(tmp_path, atlas, values):
    maps, truth = _task_set(values)
    arrays = {t: {m: g.roi for m, g in per.items()} for t, per in maps.items()}  # plain (R,) arrays work too
    fig = P.plot_maps_vs_truth_grid(arrays, {t: g.roi for t, g in truth.items()}, atlas,
                                    output_file=tmp_path / "glass.png")  # fmt: skip
    texts = [t.get_text() for t in fig.texts]
    assert texts[:3] == ["planted truth", "occlusion", "gradient"] and "task\na" in texts and "task\nb" in texts
    assert len(fig.axes) >= 6 and _files(tmp_path) == ["glass.png"]  # one glass brain per task x column
    with pytest.raises(ValueError, match=r"planted truth for every task, missing \['task_b'\]"):
        P.plot_maps_vs_truth_grid(maps, {"task_a": truth["task_a"]}, atlas)
    with pytest.raises(ValueError, match=r"task 'task_b' has no map for method\(s\) \['gradient'\]"):
        P.plot_maps_vs_truth_grid(maps | {"task_b": {"occlusion": maps["task_b"]["occlusion"]}}, truth, atlas)
    with pytest.raises(ValueError, match="style 'glass' or 'strip'"):
        P.plot_maps_vs_truth_grid(maps, truth, atlas, style="cube")
    with pytest.raises(ValueError, match="non-zero truth"):
        P.plot_maps_vs_truth_grid(maps, {"task_a": np.zeros(R), "task_b": truth["task_b"]}, atlas, style="strip")
    with pytest.raises(ValueError, match=r"shape \(100,\) for task 'task_a'"):
        P.plot_maps_vs_truth_grid({"task_a": {"occlusion": np.ones(5)}}, truth, atlas, style="strip")
    with pytest.raises(ValueError, match="at least one task"):
        P.plot_maps_vs_truth_grid({}, truth, atlas)


def test_plot_recovery_by_task(tmp_path):
    table = pd.DataFrame({
        "task": ["a"] * 3 + ["b_task"] * 3, "kind": ["internal"] * 3 + ["external"] * 3,
        "method": ["univariate", "occlusion", "gradient"] * 2,
        "roi_auc": [0.95, 0.7, 0.8, 0.9, 0.55, np.nan],
        "roi_top_k_precision": [0.8, 0.4, 0.6, 0.7, 0.2, 0.3], "roi_chance": [0.1] * 3 + [0.2] * 3,
    })  # fmt: skip
    fig, ax = plt.subplots()
    assert P.plot_recovery_by_task(table, axes=ax, title="recovery") is ax
    assert _files(tmp_path) == []
    # hue order: the learned maps first, the univariate baseline last and grey
    bars = {lab: c for c, lab in zip(ax.containers, ["occlusion", "gradient", "univariate"], strict=True)}
    np.testing.assert_allclose([p.get_height() for p in bars["occlusion"]], [0.7, 0.55])
    np.testing.assert_allclose([p.get_height() for p in bars["univariate"]], [0.95, 0.9])
    assert matplotlib.colors.to_hex(bars["univariate"][0].get_facecolor()) == "#9e9e9e"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["occlusion", "gradient", "univariate", "chance"]
    assert [line.get_ydata()[0] for line in ax.lines] == [0.5]  # chance for an AUC
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\n(internal)", "b task\n(external)"]
    assert len(ax.texts) == 5  # a value on each non-missing bar
    ax2 = P.plot_recovery_by_task(table, metric="roi_top_k_precision", annotate=False, output_file=tmp_path / "r.png")
    segments = ax2.collections[-1].get_segments()
    np.testing.assert_allclose([s[0, 1] for s in ax2.collections[-2].get_segments()], [0.1])  # per-task chance
    np.testing.assert_allclose([s[0, 1] for s in segments], [0.2])
    assert not ax2.texts and _files(tmp_path) == ["r.png"]
    with pytest.raises(ValueError, match=r"missing \['task'\]"):
        P.plot_recovery_by_task(table.drop(columns="task"))
    with pytest.raises(ValueError, match="non-missing 'edge_auc'"):
        P.plot_recovery_by_task(table.assign(edge_auc=np.nan), metric="edge_auc")


# ----------------------------------------------------------------------------- pretraining views
def _reconstruction(reference: bool = True):
    import torch

    from bmlib.model import encoder_config
    from bmlib.objectives import BrainMassPretrainer, objective_config

    torch.manual_seed(0)
    pretrainer = BrainMassPretrainer(encoder_config("tiny", R), objective_config("tiny")).eval()
    rng = np.random.default_rng(0)
    series = rng.normal(size=(2, 150, R)) + 0.5 * rng.normal(size=(2, 150, 1))
    fc = np.stack([np.corrcoef(s.T) for s in series]).astype(np.float32)
    return I.reconstruct_masked(pretrainer, fc, seed=0, reference=fc.mean(0) if reference else None)


def test_plot_reconstruction(tmp_path, atlas):
    rec = _reconstruction()
    k = rec.indices.shape[1]
    fig = P.plot_reconstruction(rec, scan=1, atlas=atlas, title="scan 1")
    ax_t, ax_p, ax_s = fig.axes[:3]
    assert _files(tmp_path) == []
    truth_img, pred_img = ax_t.images[0].get_array(), ax_p.images[0].get_array()
    assert truth_img.shape == pred_img.shape == (k, R)
    order = P.network_order(atlas)
    # columns in network order; the own diagonal entry of each masked row is left blank
    np.testing.assert_allclose(truth_img[0].filled(np.nan)[np.argsort(order)][np.arange(R) != rec.indices[1, 0]],
                               np.delete(rec.truth[1, 0], rec.indices[1, 0]), rtol=1e-6)  # fmt: skip
    assert np.isnan(truth_img.filled(np.nan)).sum() == k
    assert [t.get_text() for t in ax_t.get_yticklabels()] == [atlas.labels[i] for i in rec.indices[1]]
    assert ax_t.images[0].get_clim() == ax_p.images[0].get_clim()  # one colour scale
    assert [len(c.get_offsets()) for c in ax_s.collections] == [k * (R - 1)] * 2  # MRM and reference
    texts = [t.get_text() for t in ax_s.get_legend().get_texts()]
    t, p = rec.pairs(1)
    assert texts[0] == f"MRM head, r = {np.corrcoef(t, p)[0, 1]:.2f}" and texts[1].startswith("reference, r = ")
    assert fig._suptitle.get_text() == "scan 1"
    fig2, axes = plt.subplots(1, 3)
    out = P.plot_reconstruction(_reconstruction(reference=False), axes=axes, output_file=tmp_path / "rec.png")
    assert out is fig2 and len(axes[2].collections) == 1 and _files(tmp_path) == ["rec.png"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [f"ROI {i}" for i in rec.indices[0]]
    with pytest.raises(TypeError, match="MaskedReconstruction"):
        P.plot_reconstruction(np.zeros((3, R)))
    with pytest.raises(IndexError, match=r"scan index in \[0, 2\)"):
        P.plot_reconstruction(rec, scan=2)
    with pytest.raises(ValueError, match="expected 3 axes"):
        P.plot_reconstruction(rec, axes=axes[:2])


def test_plot_embedding_projection(tmp_path):
    from bmlib.evaluation import project_embeddings

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"sample_id": [f"s{i}" for i in range(30)], "participant": [f"p{i // 2}" for i in range(30)],
                         "dataset": np.repeat(["d1", "d2"], 15), "site": np.repeat(["a", "b", "c"], 10)})  # fmt: skip
    frame = project_embeddings(rng.normal(size=(30, 8)), meta)
    ax = P.plot_embedding_projection(frame, hue="site")
    assert len(ax.collections[0].get_offsets()) == 30
    np.testing.assert_allclose(ax.collections[0].get_offsets(), frame[["x", "y"]].to_numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    evr = frame.attrs["explained_variance_ratio"]
    assert ax.get_xlabel() == f"PC1 ({evr[0]:.0%} var.)" and ax.get_ylabel().startswith("PC2 (")
    assert _files(tmp_path) == []
    _, ax2 = plt.subplots()
    out = P.plot_embedding_projection(frame, hue="dataset", style="site", axes=ax2,
                                      legend=False, title="by dataset", output_file=tmp_path / "proj.png")  # fmt: skip
    assert out is ax2 and ax2.get_legend() is None and ax2.get_title() == "by dataset"
    assert _files(tmp_path) == ["proj.png"]
    tsne = frame.copy()
    tsne.attrs = {"method": "tsne"}
    assert P.plot_embedding_projection(tsne).get_xlabel() == "t-SNE 1"
    with pytest.raises(ValueError, match=r"missing \['scanner'\]"):
        P.plot_embedding_projection(frame, hue="scanner")
    with pytest.raises(TypeError, match="DataFrame"):
        P.plot_embedding_projection(frame.to_numpy())


def test_plot_sweep_panels_per_metric_and_failed_runs_left_out(tmp_path):
    table = pd.DataFrame({
        "DROP_FRACTION": [0.1, 0.1, 0.3, 0.3], "MASK_RATIO": [0.1, 0.3, 0.1, 0.3],
        "run_id": list("abcd"), "status": ["ok", "ok", "ok", "failed"], "wall_s": [10.0, 11.0, 12.0, 3.0],
        "03.auc": [0.7, 0.75, 0.8, np.nan], "01.n_scans": [5, 5, 5, 5], "01.smoke": [True] * 4,
    })  # fmt: skip
    fig = P.plot_sweep(table, ["DROP_FRACTION", "MASK_RATIO"], output_file=tmp_path / "sweep.png")
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["03.auc", "wall_s"]  # constant and boolean columns skipped
    assert "3 runs (1 failed, not shown)" in fig._suptitle.get_text()
    assert [t.get_text() for t in shown[0].get_xticklabels()] == ["0.1", "0.3"]
    assert shown[0].get_legend() is not None  # second parameter as colour
    assert _files(tmp_path) == ["sweep.png"]
    one = P.plot_sweep(table, "DROP_FRACTION", ["03.auc"])
    assert [ax.get_title() for ax in one.axes if ax.get_visible()] == ["03.auc"]
    with pytest.raises(ValueError, match=r"missing \['LR'\]"):
        P.plot_sweep(table, ["LR"])
    with pytest.raises(ValueError, match="none of the requested metrics"):
        P.plot_sweep(table, ["DROP_FRACTION"], ["nope"])
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        P.plot_sweep(table.iloc[:0], ["DROP_FRACTION"])


@pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                                                          "/usr/bin/google-chrome")),
                    reason="no system Chromium/Chrome for kaleido")
def test_plotly_png_export_uses_kaleido_with_the_system_browser(tmp_path, atlas, values):
    pytest.importorskip("kaleido")
    path = P.save_figure(P.brain_3d(values, atlas, surface=False), tmp_path / "brain.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert _files(tmp_path) == ["brain.png"]


def test_plot_representation_checks_draws_both_panels_with_chance(tmp_path):
    ident = pd.DataFrame({"accuracy": [0.6, 0.1, 0.9], "chance": [0.01] * 3}, index=["pretrained", "random_init", "raw_fc"])
    site = pd.DataFrame({"balanced_accuracy": [0.3, 0.2, 0.4], "chance": [0.1] * 3}, index=ident.index)
    fig = P.plot_representation_checks(ident, site, output_file=tmp_path / "checks.png")
    left, right = fig.axes
    assert [p.get_height() for p in left.patches] == pytest.approx([0.6, 0.1, 0.9])
    assert [p.get_height() for p in right.patches] == pytest.approx([0.3, 0.2, 0.4])
    assert right.lines[0].get_ydata()[0] == pytest.approx(0.1) and left.lines[0].get_ydata()[0] == pytest.approx(0.01)
    assert _files(tmp_path) == ["checks.png"]
    with pytest.raises(ValueError, match="balanced_accuracy"):
        P.plot_representation_checks(ident, ident)


def test_plot_network_bars_by_task_one_panel_per_task(atlas, tmp_path):
    nets = list(atlas.network_names)
    frame = pd.concat([
        pd.DataFrame({"task": task, "method": method, "network": nets, "importance": np.linspace(0.5, 1.5, 7),
                      "p_value": np.linspace(0.01, 0.9, 7)})
        for task in ("task_a", "task_b") for method in ("occlusion", "univariate")
    ])  # fmt: skip
    fig = P.plot_network_bars_by_task(frame, atlas, method="univariate", output_file=tmp_path / "n.png")
    assert [ax.get_title() for ax in fig.axes] == ["task_a", "task_b"]
    assert all(len(ax.patches) == 7 for ax in fig.axes) and _files(tmp_path) == ["n.png"]
    with pytest.raises(ValueError, match="methods are"):
        P.plot_network_bars_by_task(frame, atlas, method="rollout")


def test_export_brain_3d_one_html_per_task_with_shared_plotlyjs(tmp_path, atlas, values):
    maps = {"task_a": {"occlusion": I.GroupMap("occlusion", values)},
            "task_b": {"occlusion": values[::-1].copy()}}
    figs = P.export_brain_3d(maps, atlas, tmp_path, method="occlusion", surface=False)
    assert list(figs) == ["task_a", "task_b"] and figs["task_a"].layout.title.text == "task_a: occlusion"
    assert _files(tmp_path) == ["plotly.min.js", "task_a_brain3d.html", "task_b_brain3d.html"]
    assert np.allclose(np.asarray(figs["task_b"].data[0].marker.color, dtype=float), values[::-1])
    with pytest.raises(ValueError, match="missing for tasks"):
        P.export_brain_3d(maps, atlas, tmp_path, method="gradient")


def test_plot_training_history_panels(tmp_path):
    history = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "mrm": [0.1, 0.08, 0.05], "lr": [1, 1, 1]})
    fig = P.plot_training_history(history, output_file=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mrm"]  # lra / emb_std not logged: skipped
    assert list(fig.axes[0].lines[0].get_ydata()) == [3.0, 2.0, 1.5] and _files(tmp_path) == ["h.png"]
    with pytest.raises(ValueError, match="none of"):
        P.plot_training_history(history, ["lra"])
