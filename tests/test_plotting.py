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
    assert len(plt.get_fignums()) <= 2  # old figures are closed on redraw
    with pytest.raises(ValueError, match="at least one task"):
        P.interpretation_explorer({}, atlas)


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
