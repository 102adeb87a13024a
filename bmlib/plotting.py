"""Brain plots and charts: nilearn glass brains, network-ordered matrices, plotly 3D, widgets.

Static plots follow nilearn's contract: they take ``axes=None`` (and ``figure=None``), return
what they drew (a nilearn display for glass brains, the ``Axes`` for matrices and bar charts),
never call ``plt.show()`` and write a file only when ``output_file`` is given (atomically; the
drawn object is still returned). Interactive views return nilearn HTML documents
(``.save_as_html(path)``), plotly figures or an ipywidgets box.

ROI-level inputs are arrays (R,) in the atlas's ROI order; edge-level inputs are symmetric
(R, R). ``atlas`` is a :class:`bmlib.data.Atlas` (``labels``, ``networks``, ``coords (R, 3)``).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bmlib._io import atomic_path

__all__ = [
    "network_colors",
    "network_order",
    "select_top_edges",
    "plot_roi_markers",
    "plot_top_edges",
    "plot_network_matrix",
    "plot_network_pairs",
    "plot_network_bars",
    "plot_map_vs_truth",
    "plot_recovery",
    "view_roi_markers",
    "view_top_edges",
    "brain_3d",
    "fc_views_figure",
    "interpretation_explorer",
    "save_figure",
]


# ----------------------------------------------------------------------------- helpers
def _atlas_fields(atlas: Any, n_rois: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels, networks (R,), coords (R, 3)) of an atlas, checked against ``n_rois``."""
    for attr in ("labels", "networks", "coords"):
        if not hasattr(atlas, attr):
            raise TypeError(f"expected an Atlas with labels, networks and coords, got {type(atlas).__name__}")
    labels = [str(v) for v in atlas.labels]
    networks = np.asarray([str(v) for v in atlas.networks], dtype=object)
    coords = np.asarray(atlas.coords, dtype=np.float64)
    if n_rois is not None and len(labels) != n_rois:
        raise ValueError(f"expected one value per atlas ROI ({len(labels)} ROIs), got {n_rois}")
    return labels, networks, coords


def _network_names(atlas: Any) -> list[str]:
    names = getattr(atlas, "network_names", None)
    return [str(n) for n in (names if names is not None else dict.fromkeys(str(v) for v in atlas.networks))]


def _as_roi_values(values: Any, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"expected {name} of shape (n_rois,), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"expected finite {name}, got {int((~np.isfinite(v)).sum())} non-finite entries")
    return v


def _as_square(mat: Any, name: str = "edge_matrix") -> np.ndarray:
    m = np.asarray(mat.to_numpy() if isinstance(mat, pd.DataFrame) else mat, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected {name} of shape (n_rois, n_rois), got shape {m.shape}")
    return m


def _save(obj: Any, output_file: str | os.PathLike[str] | None, dpi: int = 150) -> None:
    if output_file is not None:
        save_figure(obj, output_file, dpi=dpi)


def _symmetric_limit(values: np.ndarray) -> float:
    vmax = float(np.nanmax(np.abs(values))) if values.size else 1.0
    return vmax if vmax > 0 else 1.0


def network_colors(atlas: Any, palette: str = "tab10") -> dict[str, str]:
    """A fixed colour (hex) per network, in the atlas's network order.

    >>> from types import SimpleNamespace
    >>> network_colors(SimpleNamespace(networks=["A", "B", "A"]))["B"]
    '#ff7f0e'
    """
    import matplotlib as mpl
    from matplotlib.colors import to_hex

    cmap = mpl.colormaps[palette]
    names = _network_names(atlas)
    n = getattr(cmap, "N", 256)
    return {name: to_hex(cmap(i % n if n < 256 else i / max(len(names) - 1, 1))) for i, name in enumerate(names)}


def network_order(atlas: Any) -> np.ndarray:
    """ROI permutation (R,) grouping ROIs by network (stable within a network)."""
    _, networks, _ = _atlas_fields(atlas)
    rank = {n: i for i, n in enumerate(_network_names(atlas))}
    return np.argsort(np.array([rank[n] for n in networks]), kind="stable")


def select_top_edges(edge_matrix: Any, *, top_k: int | None = 20, threshold: float | None = None) -> np.ndarray:
    """Keep the strongest edges of a symmetric matrix (by ``|value|``), zero the rest.

    Parameters
    ----------
    edge_matrix : array-like of shape (R, R)
    top_k : int or None, default=20
        Number of edges (upper triangle) to keep; ignored when ``threshold`` is given.
    threshold : float, optional
        Keep edges with ``|value| >= threshold`` instead.

    Returns
    -------
    ndarray of shape (R, R)
        Symmetric, zero diagonal.
    """
    m = _as_square(edge_matrix)
    r = m.shape[0]
    iu = np.triu_indices(r, 1)
    vals = m[iu]
    keep = np.zeros(vals.shape, dtype=bool)
    if threshold is not None:
        keep = np.abs(vals) >= threshold
    elif top_k is not None:
        if top_k < 0:
            raise ValueError(f"expected top_k >= 0, got {top_k}")
        keep[np.argsort(-np.abs(vals), kind="stable")[:top_k]] = True
    else:
        keep[:] = True
    out = np.zeros_like(m)
    out[iu[0][keep], iu[1][keep]] = vals[keep]
    return out + out.T


def _select_rois(values: np.ndarray, threshold: float | None, top_k: int | None) -> np.ndarray:
    keep = np.ones(values.shape, dtype=bool)
    if threshold is not None:
        keep = np.abs(values) >= threshold
    if top_k is not None:
        top = np.zeros(values.shape, dtype=bool)
        top[np.argsort(-np.abs(values), kind="stable")[:top_k]] = True
        keep &= top
    if not keep.any():
        raise ValueError(
            f"no ROI passes the selection (threshold={threshold}, top_k={top_k}; "
            f"max |value| = {np.abs(values).max():.3g})"
        )
    return keep


def _marker_sizes(values: np.ndarray, vmax: float, smallest: float, largest: float) -> np.ndarray:
    return smallest + (largest - smallest) * np.abs(values) / vmax


# ----------------------------------------------------------------------------- static (nilearn)
def plot_roi_markers(
    values: Any,
    atlas: Any,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
    display_mode: str = "ortho",
    axes: Any = None,
    figure: Any = None,
    title: str | None = None,
    colorbar: bool = True,
    output_file: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """ROI values as glass-brain markers (``nilearn.plotting.plot_markers``).

    Marker colour is the value; marker size grows with ``|value|``.

    Parameters
    ----------
    values : array-like of shape (R,)
    atlas : Atlas
    threshold : float, optional
        Show only ROIs with ``|value| >= threshold``.
    top_k : int, optional
        Show only the ``top_k`` ROIs by ``|value|``.
    cmap : str, default="RdBu_r"
    symmetric : bool, default=True
        Colour limits ``[-max|v|, max|v|]`` (else the data range).
    display_mode : str, default="ortho"
        nilearn display mode (``"ortho"``, ``"lzry"``, ...).
    axes, figure : matplotlib objects, optional
        Where to draw (nilearn creates a figure otherwise).
    title : str, optional
    colorbar : bool, default=True
    output_file : path, optional
        Save the figure there (format from the suffix).
    **kwargs
        Passed to ``plot_markers``.

    Returns
    -------
    nilearn display
        The glass-brain display (``.frame_axes`` is ``axes`` when given).
    """
    from nilearn import plotting

    v = _as_roi_values(values)
    labels, _, coords = _atlas_fields(atlas, v.shape[0])
    keep = _select_rois(v, threshold, top_k)
    vmax = _symmetric_limit(v)
    vmin, vmax_ = (-vmax, vmax) if symmetric else (float(v.min()), float(v.max()))
    if vmin == vmax_:
        vmin, vmax_ = vmin - 1.0, vmax_ + 1.0
    display = plotting.plot_markers(
        v[keep],
        coords[keep],
        node_size=_marker_sizes(v[keep], vmax, 8.0, 120.0),
        node_cmap=cmap,
        node_vmin=vmin,
        node_vmax=vmax_,
        display_mode=display_mode,
        figure=figure,
        axes=axes,
        title=title,
        colorbar=colorbar,
        **kwargs,
    )
    _save(display, output_file)
    return display


def plot_top_edges(
    edge_matrix: Any,
    atlas: Any,
    *,
    top_k: int | None = 20,
    threshold: float | None = None,
    cmap: str = "RdBu_r",
    display_mode: str = "ortho",
    axes: Any = None,
    figure: Any = None,
    title: str | None = None,
    colorbar: bool = True,
    output_file: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """The strongest connections on a glass brain (``nilearn.plotting.plot_connectome``).

    Nodes are coloured by network (:func:`network_colors`); ROIs without a kept edge are drawn
    small.

    Parameters
    ----------
    edge_matrix : array-like of shape (R, R)
        Symmetric edge values (importance, t, delta-FC...).
    atlas : Atlas
    top_k : int or None, default=20
        Number of edges to show (by ``|value|``); ignored when ``threshold`` is given.
    threshold : float, optional
        Show edges with ``|value| >= threshold``.
    cmap, display_mode, axes, figure, title, colorbar, output_file, **kwargs
        As in :func:`plot_roi_markers` (kwargs go to ``plot_connectome``).

    Returns
    -------
    nilearn display
    """
    from nilearn import plotting

    m = _as_square(edge_matrix)
    _, networks, coords = _atlas_fields(atlas, m.shape[0])
    kept = select_top_edges(m, top_k=top_k, threshold=threshold)
    colors = network_colors(atlas)
    node_color = [colors[n] for n in networks]
    degree = (kept != 0).sum(1)
    node_size = np.where(degree > 0, 40.0, 6.0)
    vmax = _symmetric_limit(kept) if np.any(kept) else 1.0
    display = plotting.plot_connectome(
        kept,
        coords,
        node_color=node_color,
        node_size=node_size,
        edge_cmap=cmap,
        edge_vmin=-vmax,
        edge_vmax=vmax,
        display_mode=display_mode,
        figure=figure,
        axes=axes,
        title=title,
        colorbar=colorbar and bool(np.any(kept)),
        **kwargs,
    )
    _save(display, output_file)
    return display


def plot_network_matrix(
    matrix: Any,
    atlas: Any,
    *,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    axes: Any = None,
    figure: Any = None,
    title: str | None = None,
    colorbar: bool = True,
    boundaries: bool = True,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """An FC-like (R, R) matrix ordered by network, with network boundaries and names.

    Drawn with ``nilearn.plotting.plot_matrix``; ROIs are grouped by :func:`network_order`,
    block edges are marked with lines and network names label the block centres.

    Parameters
    ----------
    matrix : array-like of shape (R, R)
    atlas : Atlas
    cmap : str, default="RdBu_r"
    vmin, vmax : float, optional
        Colour limits (default symmetric around 0 at the largest off-diagonal ``|value|``).
    axes, figure, title, colorbar, output_file
        As in :func:`plot_roi_markers`.
    boundaries : bool, default=True
        Draw lines between network blocks.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    m = _as_square(matrix, "matrix")
    _, networks, _ = _atlas_fields(atlas, m.shape[0])
    order = network_order(atlas)
    mo = m[np.ix_(order, order)]
    if vmin is None and vmax is None:
        off = mo[~np.eye(mo.shape[0], dtype=bool)]
        lim = _symmetric_limit(off) if off.size else 1.0
        vmin, vmax = -lim, lim
    if axes is None:
        figure = figure if figure is not None else plt.figure(figsize=(7, 6))
        axes = figure.add_axes((0.18, 0.18, 0.72, 0.72))  # room for the network names
    img = plotting.plot_matrix(
        mo, title=title, axes=axes, colorbar=colorbar, cmap=cmap, vmin=vmin, vmax=vmax, auto_fit=False
    )
    ax = img.axes
    nets_sorted = networks[order]
    names = _network_names(atlas)
    starts = [int(np.flatnonzero(nets_sorted == n)[0]) for n in names]
    sizes = [int((nets_sorted == n).sum()) for n in names]
    if boundaries:
        for s in starts[1:]:
            ax.axhline(s - 0.5, color="k", lw=0.8)
            ax.axvline(s - 0.5, color="k", lw=0.8)
    centres = [s + (k - 1) / 2 for s, k in zip(starts, sizes, strict=True)]
    ax.set_xticks(centres)
    ax.set_xticklabels(names, rotation=90)
    ax.set_yticks(centres)
    ax.set_yticklabels(names)
    _save(ax.figure, output_file)
    return ax


def plot_network_pairs(
    pairs: pd.DataFrame,
    *,
    p_values: pd.DataFrame | None = None,
    alpha: float = 0.05,
    cmap: str = "RdBu_r",
    axes: Any = None,
    figure: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """A (K, K) network-pair table (e.g. :func:`bmlib.interpret.network_pair_importance`).

    Parameters
    ----------
    pairs : DataFrame of shape (K, K)
        Index and columns: network names.
    p_values : DataFrame of shape (K, K), optional
        Cells with ``p < alpha`` get a star.
    alpha : float, default=0.05
    cmap, axes, figure, title, output_file
        As in :func:`plot_network_matrix`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    if not isinstance(pairs, pd.DataFrame) or pairs.shape[0] != pairs.shape[1]:
        got = f"{type(pairs).__name__} {getattr(pairs, 'shape', '')}"
        raise ValueError(f"expected a square DataFrame of network pairs, got {got}")
    m = pairs.to_numpy(dtype=np.float64)
    lim = _symmetric_limit(m[np.isfinite(m)]) if np.isfinite(m).any() else 1.0
    vmin = -lim if (m[np.isfinite(m)] < 0).any() else 0.0
    if axes is None:
        figure = figure if figure is not None else plt.figure(figsize=(6, 5))
        axes = figure.add_axes((0.2, 0.2, 0.7, 0.7))
    img = plotting.plot_matrix(
        np.nan_to_num(m), labels=[str(c) for c in pairs.columns], title=title, axes=axes,
        cmap=cmap, vmin=vmin, vmax=lim, auto_fit=False,
    )  # fmt: skip
    ax = img.axes
    if p_values is not None:
        p = p_values.reindex(index=pairs.index, columns=pairs.columns).to_numpy(dtype=np.float64)
        for i, j in zip(*np.nonzero(p < alpha), strict=True):
            ax.text(j, i, "*", ha="center", va="center", color="k", fontsize=14)
    _save(ax.figure, output_file)
    return ax


def plot_network_bars(
    df: pd.DataFrame | pd.Series,
    *,
    x: str = "network",
    y: str = "importance",
    p_col: str | None = "p_value",
    alpha: float = 0.05,
    palette: Mapping[str, str] | None = None,
    reference: float | None = None,
    axes: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Bar chart of network importance (seaborn), significant networks starred.

    Parameters
    ----------
    df : DataFrame or Series
        E.g. :func:`bmlib.interpret.network_permutation_test` output (columns ``network``,
        ``importance``, ``p_value``) or :func:`bmlib.interpret.network_importance` (a Series).
    x, y : str
        Column names of the categories and the bar heights.
    p_col : str or None, default="p_value"
        Column with p-values; bars with ``p < alpha`` get a star and every bar its p-value.
    alpha : float, default=0.05
    palette : mapping of network to colour, optional
        E.g. :func:`network_colors`.
    reference : float, optional
        Draw a dashed horizontal line there (e.g. 1 for the relative shares of
        :func:`bmlib.interpret.network_permutation_test`).
    axes : matplotlib Axes, optional
    title : str, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if isinstance(df, pd.Series):
        df = df.rename(y).rename_axis(x).reset_index()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a DataFrame or Series, got {type(df).__name__}")
    missing = [c for c in (x, y) if c not in df.columns]
    if missing:
        raise ValueError(f"expected columns {x!r} and {y!r}, missing {missing} (columns: {list(df.columns)})")
    if axes is None:
        _, axes = plt.subplots(figsize=(6, 3.5))
    data = df.assign(**{x: df[x].astype(str).to_numpy()})
    order = list(dict.fromkeys(data[x].to_numpy().tolist()))
    kw: dict[str, Any] = {"hue": x, "legend": False}
    if palette is not None:
        kw["palette"] = {k: palette[k] for k in order if k in palette} or None
    sns.barplot(data=data, x=x, y=y, order=order, ax=axes, errorbar=None, **kw)
    if p_col is not None and p_col in data.columns:
        heights = data[y].to_numpy(dtype=np.float64)
        span = float(np.nanmax(np.abs(heights))) if heights.size else 1.0
        for i, (h, p) in enumerate(zip(heights, data[p_col].to_numpy(dtype=np.float64), strict=True)):
            star = "*" if p < alpha else ""
            axes.text(i, h + 0.02 * span * (1 if h >= 0 else -1), f"{star}p={p:.2g}", ha="center",
                      va="bottom" if h >= 0 else "top", fontsize=8)  # fmt: skip
        lo, hi = axes.get_ylim()
        axes.set_ylim(lo - 0.08 * span * (lo < 0), hi + 0.08 * span)
    if reference is not None:
        axes.axhline(reference, ls="--", color="gray", lw=1)
    plt.setp(axes.get_xticklabels(), rotation=45, ha="right")
    if title:
        axes.set_title(title)
    _save(axes.figure, output_file)
    return axes


def plot_map_vs_truth(
    values: Any,
    truth: Any,
    atlas: Any,
    *,
    top_k: int | None = None,
    titles: Sequence[str] = ("importance", "planted truth"),
    figure: Any = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """An importance map and the planted truth as two glass-brain rows of one figure.

    Parameters
    ----------
    values : array-like of shape (R,)
        E.g. ``TaskInterpretation.groups["gradient"].roi``.
    truth : array-like of shape (R,)
        E.g. :func:`bmlib.interpret.truth_map` ``(ground_truth).roi``; ROIs with 0 are hidden.
    atlas : Atlas
    top_k : int, optional
        Show only the ``top_k`` ROIs of the importance map (default: as many as planted ROIs).
    titles : (str, str)
    figure : matplotlib Figure, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    v = _as_roi_values(values)
    t = _as_roi_values(truth, "truth")
    if t.shape != v.shape:
        raise ValueError(f"expected truth of shape {v.shape} like values, got shape {t.shape}")
    if len(titles) != 2:
        raise ValueError(f"expected 2 titles, got {len(titles)}")
    planted = int((t != 0).sum())
    if planted == 0:
        raise ValueError("expected at least one planted ROI (non-zero truth), got none")
    fig = figure if figure is not None else plt.figure(figsize=(9, 6))
    top, bottom = fig.add_axes((0, 0.5, 1, 0.5)), fig.add_axes((0, 0, 1, 0.5))
    plot_roi_markers(v, atlas, top_k=top_k or planted, axes=top, figure=fig, title=titles[0])
    plot_roi_markers(t, atlas, threshold=float(np.abs(t[t != 0]).min()), axes=bottom, figure=fig, title=titles[1])
    _save(fig, output_file)
    return fig


def plot_recovery(
    table: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("roi_auc", "edge_auc"),
    axes: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Grouped bars of recovery scores per method (:func:`bmlib.interpret.recovery_table`).

    A dashed line marks chance (0.5 for AUCs; for top-k precision the ``roi_chance`` /
    ``edge_chance`` column).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    missing = [c for c in ("method", *metrics) if c not in table.columns]
    if missing:
        raise ValueError(f"expected recovery columns {['method', *metrics]}, missing {missing}")
    long = table.melt(id_vars="method", value_vars=list(metrics), var_name="metric", value_name="score")
    long = long.assign(method=long["method"].astype(str).to_numpy(), metric=long["metric"].astype(str).to_numpy())
    if axes is None:
        _, axes = plt.subplots(figsize=(1.2 * len(table) + 2, 3.5))
    sns.barplot(data=long.dropna(), x="method", y="score", hue="metric", ax=axes, errorbar=None)
    chance = {m: 0.5 if m.endswith("auc") else float(table[m.split("_")[0] + "_chance"].iloc[0]) for m in metrics}
    for value in sorted(set(chance.values())):
        axes.axhline(value, ls="--", color="gray", lw=1)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("recovery of planted effects")
    axes.tick_params(axis="x", rotation=30)
    if title:
        axes.set_title(title)
    _save(axes.figure, output_file)
    return axes


# ----------------------------------------------------------------------------- interactive
def _value_colors(values: np.ndarray, cmap: str, vmax: float) -> list[str]:
    import matplotlib as mpl
    from matplotlib.colors import Normalize, to_hex

    norm = Normalize(-vmax, vmax)
    cm = mpl.colormaps[cmap]
    return [to_hex(cm(norm(v))) for v in values]


def view_roi_markers(
    values: Any,
    atlas: Any,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    cmap: str = "RdBu_r",
    title: str | None = None,
) -> Any:
    """Interactive 3D markers (``nilearn.plotting.view_markers``) coloured and sized by value.

    Returns
    -------
    nilearn.plotting.html_connectome.ConnectomeView
        An HTML document: ``.save_as_html(path)``, displays inline in a notebook.
    """
    from nilearn import plotting

    v = _as_roi_values(values)
    labels, networks, coords = _atlas_fields(atlas, v.shape[0])
    keep = _select_rois(v, threshold, top_k)
    vmax = _symmetric_limit(v)
    marker_labels = [f"{labels[i]} ({networks[i]}): {v[i]:.3g}" for i in np.flatnonzero(keep)]
    return plotting.view_markers(
        coords[keep],
        marker_color=_value_colors(v[keep], cmap, vmax),
        marker_size=_marker_sizes(v[keep], vmax, 2.0, 12.0),
        marker_labels=marker_labels,
        title=title,
    )


def view_top_edges(
    edge_matrix: Any,
    atlas: Any,
    *,
    top_k: int | None = 20,
    threshold: float | None = None,
    cmap: str = "RdBu_r",
    title: str | None = None,
) -> Any:
    """Interactive connectome (``nilearn.plotting.view_connectome``) of the strongest edges.

    Returns
    -------
    nilearn.plotting.html_connectome.ConnectomeView
    """
    from nilearn import plotting

    m = _as_square(edge_matrix)
    labels, networks, coords = _atlas_fields(atlas, m.shape[0])
    kept = select_top_edges(m, top_k=top_k, threshold=threshold)
    colors = network_colors(atlas)
    return plotting.view_connectome(
        kept,
        coords,
        edge_cmap=cmap,
        node_color=[colors[n] for n in networks],
        node_size=3.0,
        title=title,
        node_labels=[f"{lab} ({net})" for lab, net in zip(labels, networks, strict=True)],
    )


@functools.lru_cache(maxsize=1)
def _fsaverage5_pial() -> list[tuple[np.ndarray, np.ndarray]]:
    from nilearn import datasets

    mesh = datasets.load_fsaverage("fsaverage5")["pial"]
    return [(np.asarray(p.coordinates), np.asarray(p.faces)) for p in (mesh.parts["left"], mesh.parts["right"])]


def brain_3d(
    values: Any,
    atlas: Any,
    *,
    edge_matrix: Any = None,
    top_k_edges: int = 20,
    threshold: float | None = None,
    cmap: str = "RdBu",
    surface: bool = True,
    surface_opacity: float = 0.08,
    title: str | None = None,
    value_name: str = "importance",
) -> Any:
    """Plotly 3D brain: ROI markers (hover: ROI name, network, value), optional edges and mesh.

    Parameters
    ----------
    values : array-like of shape (R,)
    atlas : Atlas
    edge_matrix : array-like of shape (R, R), optional
        Adds the ``top_k_edges`` strongest edges as lines.
    top_k_edges : int, default=20
    threshold : float, optional
        Show only ROIs with ``|value| >= threshold``.
    cmap : str, default="RdBu"
        Plotly colour scale (reversed so that positive is red).
    surface : bool, default=True
        Draw nilearn's offline fsaverage5 pial surface as a transparent glass brain.
    surface_opacity : float, default=0.08
    title : str, optional
    value_name : str, default="importance"
        Name of the value in the hover text and colour bar.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    v = _as_roi_values(values)
    labels, networks, coords = _atlas_fields(atlas, v.shape[0])
    keep = _select_rois(v, threshold, None)
    vmax = _symmetric_limit(v)
    fig = go.Figure()
    if surface:
        for i, (xyz, faces) in enumerate(_fsaverage5_pial()):
            fig.add_trace(
                go.Mesh3d(
                    x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                    color="lightgray", opacity=surface_opacity, hoverinfo="skip", showscale=False,
                    name="left" if i == 0 else "right",
                )
            )  # fmt: skip
    if edge_matrix is not None:
        kept = select_top_edges(_as_square(edge_matrix), top_k=top_k_edges)
        ii, jj = np.nonzero(np.triu(kept, 1))
        xs, ys, zs = [], [], []
        for a, b in zip(ii, jj, strict=True):
            xs += [coords[a, 0], coords[b, 0], None]
            ys += [coords[a, 1], coords[b, 1], None]
            zs += [coords[a, 2], coords[b, 2], None]
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "black", "width": 3},
                                   hoverinfo="skip", name="edges"))  # fmt: skip
    idx = np.flatnonzero(keep)
    fig.add_trace(
        go.Scatter3d(
            x=coords[idx, 0],
            y=coords[idx, 1],
            z=coords[idx, 2],
            mode="markers",
            marker={
                "size": _marker_sizes(v[idx], vmax, 3.0, 14.0),
                "color": v[idx],
                "colorscale": cmap,
                "reversescale": True,
                "cmin": -vmax,
                "cmax": vmax,
                "colorbar": {"title": {"text": value_name}},
                "line": {"width": 0},
            },
            customdata=np.stack([np.asarray(labels, dtype=object)[idx], networks[idx]], axis=1),
            hovertemplate="%{customdata[0]}<br>network: %{customdata[1]}<br>"
            + value_name
            + ": %{marker.color:.3g}<extra></extra>",
            name="ROIs",
        )
    )
    fig.update_layout(
        title=title,
        scene={**{ax: {"visible": False} for ax in ("xaxis", "yaxis", "zaxis")}, "aspectmode": "data"},
        margin={"l": 0, "r": 0, "t": 40 if title else 0, "b": 0},
        showlegend=False,
    )
    return fig


def fc_views_figure(
    fc: Any,
    views: Any,
    *,
    atlas: Any = None,
    titles: Sequence[str] | None = None,
    zmax: float = 1.0,
) -> Any:
    """Plotly heatmaps of one FC matrix next to its pFC views (shared colour scale).

    Parameters
    ----------
    fc : array-like of shape (R, R)
    views : array-like of shape (V, R, R)
        Pseudo-FC views of the same scan (e.g. ``bmlib.pfc.make_views(...)[:, 0]``).
    atlas : Atlas, optional
        Order ROIs by network and show ROI names on hover.
    titles : sequence of str, optional
        ``V + 1`` panel titles (default "FC", "pFC view 1", ...).
    zmax : float, default=1.0
        Colour limits ``[-zmax, zmax]``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    base = _as_square(fc, "fc")
    vs = np.asarray(views.detach().cpu() if hasattr(views, "detach") else views, dtype=np.float64)
    if vs.ndim == 2:
        vs = vs[None]
    if vs.ndim != 3 or vs.shape[1:] != base.shape:
        raise ValueError(f"expected views of shape (n_views, {base.shape[0]}, {base.shape[0]}), got shape {vs.shape}")
    mats = [base, *list(vs)]
    names = list(titles) if titles is not None else ["FC", *[f"pFC view {i + 1}" for i in range(len(vs))]]
    if len(names) != len(mats):
        raise ValueError(f"expected {len(mats)} titles (FC + views), got {len(names)}")
    labels = [str(i) for i in range(base.shape[0])]
    if atlas is not None:
        order = network_order(atlas)
        lab, nets, _ = _atlas_fields(atlas, base.shape[0])
        mats = [m[np.ix_(order, order)] for m in mats]
        labels = [f"{lab[i]} ({nets[i]})" for i in order]
    fig = make_subplots(rows=1, cols=len(mats), subplot_titles=names, horizontal_spacing=0.03)
    for c, m in enumerate(mats, start=1):
        fig.add_trace(
            go.Heatmap(z=m, x=labels, y=labels, zmin=-zmax, zmax=zmax, colorscale="RdBu", reversescale=True,
                       showscale=c == len(mats), hovertemplate="%{y} - %{x}: %{z:.2f}<extra></extra>"),
            row=1, col=c,
        )  # fmt: skip
        fig.update_xaxes(showticklabels=False, row=1, col=c)
        fig.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor=f"x{c if c > 1 else ''}", row=1, col=c)
    fig.update_layout(height=340, width=300 * len(mats) + 60, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# ----------------------------------------------------------------------------- explorer
def _map_at(entry: Any, subject: str, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """ROI (R,) and edge (R, R) | None of a GroupMap / ImportanceMap for a subject or the group."""
    roi = np.asarray(entry.roi, dtype=np.float64)
    edge = None if getattr(entry, "edge", None) is None else np.asarray(entry.edge, dtype=np.float64)
    if roi.ndim == 1:
        return roi, edge
    if subject != "group":
        i = int(subject)
        return roi[i], None if edge is None else edge[i]
    if y is not None and hasattr(entry, "group"):
        g = entry.group(y)
        return np.asarray(g.roi), None if g.edge is None else np.asarray(g.edge)
    return roi.mean(0), None if edge is None else edge.mean(0)


def interpretation_explorer(
    maps: Mapping[str, Mapping[str, Any]],
    atlas: Any,
    *,
    labels: Mapping[str, Any] | None = None,
    truth: Mapping[str, Sequence[int]] | None = None,
) -> Any:
    """An ipywidgets explorer of importance maps: task, method, subject, threshold, view.

    Parameters
    ----------
    maps : mapping task -> (mapping method -> GroupMap or ImportanceMap)
        Per-subject :class:`bmlib.interpret.ImportanceMap` entries allow choosing a subject;
        "group" uses ``labels`` (difference convention) or the mean over subjects.
    atlas : Atlas
    labels : mapping task -> y (N,), optional
        Labels for the group maps of per-subject entries.
    truth : mapping task -> planted ROI indices, optional
        Shown in the title (planted ROIs among the displayed ones).

    Returns
    -------
    ipywidgets.VBox
        With ``.controls`` (dict of the widgets), ``.output`` (the Output area),
        ``.redraw()`` and ``.last_figure`` (the matplotlib figure last drawn).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("expected at least one task in maps, got none")
    for task, per_method in maps.items():
        if not per_method:
            raise ValueError(f"expected at least one method for task {task!r}, got none")
    tasks = list(maps)
    task_dd = widgets.Dropdown(options=tasks, value=tasks[0], description="task")
    method_dd = widgets.Dropdown(description="method")
    subject_dd = widgets.Dropdown(description="subject")
    view_dd = widgets.Dropdown(options=["markers", "edges", "networks"], value="markers", description="view")
    thr = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="threshold",
                              tooltip="fraction of the largest |value|")  # fmt: skip
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([task_dd, method_dd]), widgets.HBox([subject_dd, view_dd]), thr, out])
    state: dict[str, Any] = {"updating": False}

    def _sync_options() -> None:
        state["updating"] = True
        try:
            methods = list(maps[task_dd.value])
            method_dd.options = methods
            if method_dd.value not in methods:
                method_dd.value = methods[0]
            entry = maps[task_dd.value][method_dd.value]
            roi = np.asarray(entry.roi)
            subjects = ["group"] + ([str(i) for i in range(roi.shape[0])] if roi.ndim == 2 else [])
            subject_dd.options = subjects
            if subject_dd.value not in subjects:
                subject_dd.value = "group"
        finally:
            state["updating"] = False

    def redraw(*_: Any) -> Any:
        if state["updating"]:
            return None
        task, method, subject = task_dd.value, method_dd.value, subject_dd.value
        y = None if labels is None else labels.get(task)
        roi, edge = _map_at(maps[task][method], subject, y)
        vmax = _symmetric_limit(roi)
        threshold = thr.value * vmax if thr.value > 0 else None
        title = f"{task} | {method} | {subject}"
        if truth is not None and task in truth:
            shown = np.abs(roi) >= (threshold or 0.0)
            title += f" | planted shown {int(shown[list(truth[task])].sum())}/{len(truth[task])}"
        fig = plt.figure(figsize=(9, 3.4))
        if view_dd.value == "edges" and edge is not None:
            evmax = _symmetric_limit(edge)
            plot_top_edges(edge, atlas, top_k=None if threshold else 20,
                           threshold=thr.value * evmax if thr.value > 0 else None, figure=fig, title=title)  # fmt: skip
        elif view_dd.value == "networks":
            from bmlib.interpret import network_importance

            ax = fig.add_subplot(111)
            plot_network_bars(network_importance(roi, atlas), p_col=None, axes=ax, title=title,
                              palette=network_colors(atlas))  # fmt: skip
        else:
            plot_roi_markers(roi, atlas, threshold=threshold, figure=fig, title=title)
        if box.last_figure is not None:
            plt.close(box.last_figure)
        box.last_figure = fig
        box.last_title = title
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(fig)
        return fig

    def on_task(_: Any) -> None:
        _sync_options()
        redraw()

    def on_method(_: Any) -> None:
        if not state["updating"]:
            _sync_options()
            redraw()

    box.last_figure = None
    box.last_title = None
    box.controls = {"task": task_dd, "method": method_dd, "subject": subject_dd, "view": view_dd, "threshold": thr}
    box.output = out
    box.redraw = redraw
    _sync_options()
    task_dd.observe(on_task, names="value")
    method_dd.observe(on_method, names="value")
    for w in (subject_dd, view_dd, thr):
        w.observe(redraw, names="value")
    redraw()
    return box


# ----------------------------------------------------------------------------- saving
def save_figure(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    dpi: int = 150,
    strict: bool = True,
    include_plotlyjs: bool | str = True,
) -> Path | None:
    """Save a matplotlib figure / Axes, nilearn display or HTML view, or plotly figure atomically.

    Parameters
    ----------
    fig : object
        ``matplotlib.figure.Figure``, ``Axes``, a nilearn display (``.savefig``), a nilearn
        HTML view (``.save_as_html``; ``.html`` only), or a plotly figure (``.html`` always
        works and embeds plotly.js so the file opens offline; ``.png``/``.svg``/``.pdf`` need
        kaleido with a Chrome/Chromium).
    path : path
        Destination; the format comes from the suffix.
    dpi : int, default=150
        Raster resolution for matplotlib.
    strict : bool, default=True
        If False, a failed plotly image export warns and returns None instead of raising.
    include_plotlyjs : bool or str, default=True
        Plotly HTML only: True embeds plotly.js (~3.5 MB, opens offline); ``"cdn"`` links it;
        ``"directory"`` expects a ``plotly.min.js`` beside the file.

    Returns
    -------
    Path or None
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if not suffix:
        raise ValueError(f"expected a file name with a suffix (.png, .svg, .pdf, .html), got {str(path)!r}")
    if hasattr(fig, "save_as_html"):  # nilearn HTML document
        if suffix != ".html":
            raise ValueError(f"expected a .html path for an interactive nilearn view, got {str(path)!r}")
        with atomic_path(out) as tmp:
            if hasattr(fig, "get_standalone"):  # the full page, not nilearn's iframe wrapper
                tmp.write_text(fig.get_standalone(), encoding="utf-8")
            else:
                fig.save_as_html(tmp)
        return out
    if type(fig).__module__.startswith("plotly"):
        if suffix == ".html":
            with atomic_path(out) as tmp:
                fig.write_html(tmp, include_plotlyjs=include_plotlyjs, full_html=True)
            return out
        try:
            with atomic_path(out) as tmp:
                fig.write_image(tmp)
        except Exception as err:  # kaleido missing, or no Chrome for kaleido >= 1
            msg = f"plotly image export to {out.name} failed ({type(err).__name__}: {err}); save as .html instead"
            if strict:
                raise RuntimeError(msg) from err
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return None
        return out
    if hasattr(fig, "frame_axes"):  # nilearn display
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi)
        return out
    if hasattr(fig, "savefig"):  # matplotlib Figure
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        return out
    if hasattr(fig, "figure") and hasattr(fig.figure, "savefig"):  # Axes
        with atomic_path(out) as tmp:
            fig.figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
        return out
    raise TypeError(f"expected a matplotlib, nilearn or plotly figure, got {type(fig).__name__}")

