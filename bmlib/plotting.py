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
    "plot_maps_vs_truth_grid",
    "plot_recovery_by_task",
    "view_roi_markers",
    "view_top_edges",
    "brain_3d",
    "fc_views_figure",
    "pfc_explorer",
    "plot_sweep",
    "export_brain_3d",
    "plot_training_history",
    "plot_network_bars_by_task",
    "plot_representation_checks",
    "interpretation_explorer",
    "save_figure",
    "plot_reconstruction",
    "plot_embedding_projection",
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


def _roi_of(entry: Any, name: str) -> np.ndarray:
    """The (R,) ROI vector of a GroupMap-like entry (``.roi``) or an array."""
    return _as_roi_values(getattr(entry, "roi", entry), name)


def _roi_strip(ax: Any, rows: list[np.ndarray], names: list[str], atlas: Any, *, cmap: str, xlabels: bool) -> Any:
    """``|value|`` of several ROI maps as network-ordered rows, each scaled to its maximum."""
    order = network_order(atlas)
    _, networks, _ = _atlas_fields(atlas, rows[0].shape[0])
    mat = np.stack([np.abs(v[order]) / _symmetric_limit(v) for v in rows])  # (1 + M, R)
    img = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0)
    nets_sorted = networks[order]
    names_net = _network_names(atlas)
    starts = [int(np.flatnonzero(nets_sorted == n)[0]) for n in names_net if (nets_sorted == n).any()]
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="w", lw=1.2)
    ax.axhline(0.5, color="w", lw=2.0)  # the truth row apart from the maps
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ends = [*starts[1:], len(order)]
    ax.set_xticks([(s + e - 1) / 2 for s, e in zip(starts, ends, strict=True)])
    ax.set_xticklabels([str(nets_sorted[s]) for s in starts] if xlabels else [], rotation=30, ha="right", fontsize=8)
    ax.tick_params(length=0)
    return img


def plot_maps_vs_truth_grid(
    maps: Mapping[str, Mapping[str, Any]],
    truth: Mapping[str, Any],
    atlas: Any,
    *,
    methods: Sequence[str] | None = None,
    style: str = "glass",
    top_k: int | None = None,
    display_mode: str = "z",
    cmap: str | None = None,
    figure: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Each task's planted truth beside every method's group ROI map, one row per task.

    Parameters
    ----------
    maps : mapping task -> (mapping method -> GroupMap or array (R,))
        E.g. ``TaskSetInterpretation.maps("group")`` of :func:`bmlib.interpret.interpret_tasks`.
    truth : mapping task -> GroupMap or array (R,)
        E.g. ``TaskSetInterpretation.truth`` (:func:`bmlib.interpret.truth_map`); every task of
        ``maps`` needs one. ROIs with 0 are not planted.
    atlas : Atlas
    methods : sequence of str, optional
        Columns after the truth (default: the first task's methods, in order).
    style : {"glass", "strip"}, default="glass"
        ``"glass"``: nilearn glass-brain markers (:func:`plot_roi_markers`), the planted ROIs in
        the truth column and each map's ``top_k`` ROIs (default: as many as planted). ``"strip"``:
        one compact panel per task, rows truth + methods, columns all ROIs grouped by network,
        colour ``|value|`` scaled to each map's maximum (what the recovery AUC ranks); about 20x
        faster than 5 x 5 glass brains.
    top_k : int, optional
        ``"glass"`` only.
    display_mode : str, default="z"
        ``"glass"`` only: nilearn display mode of each panel (``"z"`` is one axial view).
    cmap : str, optional
        Default ``"RdBu_r"`` (glass, signed values) or ``"magma_r"`` (strip, ``|value|``).
    figure : matplotlib Figure, optional
    title : str, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if style not in ("glass", "strip"):
        raise ValueError(f"expected style 'glass' or 'strip', got {style!r}")
    if not maps:
        raise ValueError("expected at least one task in maps, got none")
    tasks = list(maps)
    missing = [t for t in tasks if t not in truth]
    if missing:
        raise ValueError(f"expected a planted truth for every task, missing {missing} (truth has {list(truth)})")
    cols = list(methods) if methods is not None else list(next(iter(maps.values())))
    if not cols:
        raise ValueError("expected at least one method, got none")
    for t in tasks:
        absent = [m for m in cols if m not in maps[t]]
        if absent:
            raise ValueError(f"task {t!r} has no map for method(s) {absent} (it has {list(maps[t])})")
    n_rois = len(_atlas_fields(atlas)[0])
    grid = {t: [_roi_of(truth[t], f"truth of {t!r}")] + [_roi_of(maps[t][m], f"{t!r} {m} map") for m in cols]
            for t in tasks}  # fmt: skip
    for t, rows in grid.items():
        bad = [v.shape for v in rows if v.shape != (n_rois,)]
        if bad:
            raise ValueError(f"expected ROI maps of shape ({n_rois},) for task {t!r}, got shapes {bad}")
        if not np.any(rows[0]):
            raise ValueError(f"expected at least one planted ROI (non-zero truth) for task {t!r}, got none")
    names = ["planted truth", *cols]
    if style == "strip":
        fig = figure if figure is not None else plt.figure(figsize=(10, 0.32 * len(names) * len(tasks) + 1.2))
        axes = fig.subplots(len(tasks), 1, squeeze=False)[:, 0]
        for i, (ax, t) in enumerate(zip(axes, tasks, strict=True)):
            img = _roi_strip(ax, grid[t], names, atlas, cmap=cmap or "magma_r", xlabels=i == len(tasks) - 1)
            ax.set_title(t, loc="left", fontsize=9)
        fig.colorbar(img, ax=list(axes), fraction=0.02, pad=0.01, label="|value| / max")
    else:
        fig = figure if figure is not None else plt.figure(figsize=(2.3 * len(names) + 1.2, 2.4 * len(tasks) + 0.4))
        left, top = 1.2 / fig.get_figwidth(), 0.4 / fig.get_figheight()
        w, h = (1 - left) / len(names), (1 - top) / len(tasks)
        for c, name in enumerate(names):
            fig.text(left + (c + 0.5) * w, 1 - top / 2, name, ha="center", va="center", fontsize=10)
        for r, t in enumerate(tasks):
            fig.text(left / 2, 1 - top - (r + 0.5) * h, t.replace("_", "\n"), ha="center", va="center", fontsize=9)
            planted = int((grid[t][0] != 0).sum())
            for c, v in enumerate(grid[t]):
                ax = fig.add_axes((left + c * w, 1 - top - (r + 1) * h, w, h))
                sel = {"threshold": float(np.abs(v[v != 0]).min())} if c == 0 else {"top_k": top_k or planted}
                plot_roi_markers(v, atlas, display_mode=display_mode, cmap=cmap or "RdBu_r", axes=ax, figure=fig,
                                 colorbar=False, **sel)  # fmt: skip
    if title:
        fig.suptitle(title, y=1.0 if style == "glass" else 0.99)
    _save(fig, output_file)
    return fig


def plot_recovery_by_task(
    table: pd.DataFrame,
    *,
    metric: str = "roi_auc",
    baseline: str | None = "univariate",
    annotate: bool = True,
    axes: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Recovery of the planted truth for every task and method, as grouped bars.

    Parameters
    ----------
    table : DataFrame
        Columns ``task``, ``method`` and ``metric`` (optionally ``kind``), e.g.
        ``TaskSetInterpretation.recovery`` of :func:`bmlib.interpret.interpret_tasks`.
    metric : str, default="roi_auc"
        A recovery column. Chance, drawn dashed, is 0.5 for AUCs and the ``roi_chance`` /
        ``edge_chance`` column (per task) for top-k precision.
    baseline : str or None, default="univariate"
        This method's bars are grey, drawn last: the reference the learned maps should beat.
    annotate : bool, default=True
        Write each bar's value on it.
    axes : matplotlib Axes, optional
    title : str, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import textwrap

    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a DataFrame, got {type(table).__name__}")
    missing = [c for c in ("task", "method", metric) if c not in table.columns]
    if missing:
        raise ValueError(f"expected columns ['task', 'method', {metric!r}], missing {missing} "
                         f"(columns: {list(table.columns)})")  # fmt: skip
    data = table.dropna(subset=[metric])
    if data.empty:
        raise ValueError(f"expected at least one non-missing {metric!r} value, got none")
    tasks = list(dict.fromkeys(data["task"].astype(str)))
    methods = list(dict.fromkeys(data["method"].astype(str)))
    if baseline in methods:
        methods = [m for m in methods if m != baseline] + [baseline]
    kinds = dict(zip(data["task"].astype(str), data["kind"].astype(str), strict=False)) if "kind" in data else {}
    ticks = [textwrap.fill(t.replace("_", " "), 16, break_long_words=False) + (f"\n({kinds[t]})" if kinds.get(t) else "")
             for t in tasks]  # fmt: skip
    colors = iter(c for c in sns.color_palette("tab10").as_hex() if c != "#7f7f7f")
    palette = {m: "#9e9e9e" if m == baseline else next(colors) for m in methods}
    if axes is None:
        _, axes = plt.subplots(figsize=(max(6.0, 0.5 * len(tasks) * len(methods) + 2.0), 3.8))
    plot_data = data.assign(task=data["task"].astype(str).to_numpy(), method=data["method"].astype(str).to_numpy())
    sns.barplot(data=plot_data, x="task", y=metric, hue="method", order=tasks, hue_order=methods,
                palette=palette, errorbar=None, ax=axes)  # fmt: skip
    if annotate:
        for container in axes.containers:
            axes.bar_label(container, fmt="%.2f", fontsize=6, padding=1)
    if metric.endswith("auc"):
        axes.axhline(0.5, ls="--", color="k", lw=1, label="chance")
    else:
        chance_col = metric.split("_")[0] + "_chance"
        if chance_col in data.columns:
            per_task = data.groupby(data["task"].astype(str))[chance_col].first()
            for i, t in enumerate(tasks):
                axes.hlines(per_task[t], i - 0.45, i + 0.45, ls="--", color="k", lw=1,
                            label="chance" if i == 0 else None)  # fmt: skip
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels(ticks, fontsize=8)
    axes.set_xlabel("")
    axes.set_ylim(0, 1.08)
    axes.set_ylabel(metric.replace("_", " "))
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
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


def pfc_explorer(
    x: Any,
    lengths: Any = None,
    *,
    atlas: Any = None,
    sample_ids: Sequence[Any] | None = None,
    drop_fraction: float = 0.2,
    n_views: int = 3,
    seed: int = 0,
    min_timepoints: int | None = None,
) -> Any:
    """An ipywidgets explorer of pseudo-FC: choose a scan, a drop fraction and a seed.

    Shows the scan's full FC next to ``n_views`` pFC views (as :func:`plot_network_matrix`) and the
    correlation of each view with the full FC, so the strength of the augmentation can be judged
    by eye before pretraining.

    Parameters
    ----------
    x : Tensor or ndarray (B, T, R)
        Padded time series of the scans offered (see :func:`bmlib.pfc.pad_series`).
    lengths : sequence of int (B,), optional
        Valid timepoints per scan.
    atlas : Atlas, optional
        Order ROIs by network and name them on hover.
    sample_ids : sequence of str, optional
        Labels of the scans in the subject menu (default ``0 .. B-1``).
    drop_fraction : float, default=0.2
        Initial drop fraction (the slider runs from 0 to the largest fraction that keeps
        ``min_timepoints`` in the shortest scan, at most 0.9).
    n_views : int, default=3
    seed : int, default=0
        Initial seed of the view generator.
    min_timepoints : int, optional
        Fewest timepoints a view may keep (default :data:`bmlib.pfc.DEFAULT_MIN_TIMEPOINTS`).

    Returns
    -------
    ipywidgets.VBox
        With ``.controls`` (dict of the widgets), ``.output``, ``.redraw()``,
        ``.last_figure`` (the matplotlib figure last drawn: full FC and views, ordered by
        network when an atlas is given), ``.last_views`` (V, R, R) and ``.last_similarity``
        (r of each view with the full FC).
    """
    import ipywidgets as widgets
    import torch

    from bmlib.connectivity import batch_fc
    from bmlib.pfc import DEFAULT_MIN_TIMEPOINTS, _check_lengths, make_views

    xb = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if xb.ndim != 3:
        raise ValueError(f"expected padded series of shape (B, T, R), got shape {tuple(xb.shape)}")
    if not xb.is_floating_point():
        xb = xb.double()
    batch, t_max, n_rois = xb.shape
    counts = _check_lengths(lengths, batch, t_max, xb.device)
    names = [str(s) for s in (sample_ids if sample_ids is not None else range(batch))]
    if len(names) != batch:
        raise ValueError(f"expected {batch} sample_ids (one per scan), got {len(names)}")
    if not isinstance(n_views, int) or n_views < 1:
        raise ValueError(f"expected n_views to be a positive integer, got {n_views!r}")
    keep_min = DEFAULT_MIN_TIMEPOINTS if min_timepoints is None else int(min_timepoints)
    max_fraction = min(0.9, 1.0 - keep_min / float(counts.min()))
    if max_fraction < 0:
        raise ValueError(f"expected scans with at least {keep_min} timepoints, the shortest has {int(counts.min())}")
    max_fraction = float(np.floor(max_fraction * 20) / 20)
    if not 0.0 <= drop_fraction <= max_fraction:
        raise ValueError(f"expected drop_fraction in [0, {max_fraction}] for these scans, got {drop_fraction!r}")
    full = batch_fc(xb, counts).numpy()
    iu = np.triu_indices(n_rois, 1)

    subject_dd = widgets.Dropdown(options=[(name, i) for i, name in enumerate(names)], value=0, description="subject")
    frac = widgets.FloatSlider(value=drop_fraction, min=0.0, max=max_fraction, step=0.05,
                               description="drop fraction", continuous_update=False)  # fmt: skip
    seed_box = widgets.IntText(value=int(seed), description="seed")
    info = widgets.HTML()
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([subject_dd, frac, seed_box]), info, out])

    def redraw(*_: Any) -> Any:
        from matplotlib.figure import Figure

        i = int(subject_dd.value)
        gen = torch.Generator().manual_seed(int(seed_box.value))
        views = make_views(xb[i : i + 1], counts[i : i + 1], n_views=n_views, drop_fraction=float(frac.value),
                           min_timepoints=keep_min, generator=gen)[:, 0].numpy()  # fmt: skip
        r = np.corrcoef(np.vstack([full[i][iu], views[:, iu[0], iu[1]]]))[0, 1:]
        kept = int(counts[i]) - int(np.round(float(frac.value) * int(counts[i])))
        info.value = (f"<b>{names[i]}</b>: {kept} of {int(counts[i])} timepoints kept per view; "
                      f"r(view, full FC) = {', '.join(f'{v:.3f}' for v in r)}")  # fmt: skip
        # matplotlib, not plotly: large plotly figures inside an Output widget stall nbclient/papermill
        # a Figure outside pyplot: shown only in the widget, never again by the inline backend
        fig = Figure(figsize=(3.2 * (n_views + 1), 3.3))
        axes = fig.subplots(1, n_views + 1)
        titles = ["full FC", *[f"view {k + 1} (r={v:.2f})" for k, v in enumerate(r)]]
        for k, (ax, mat) in enumerate(zip(np.atleast_1d(axes), [full[i], *views], strict=True)):
            if atlas is not None:
                plot_network_matrix(mat, atlas, axes=ax, vmin=-1.0, vmax=1.0, colorbar=False, title=titles[k])
                if k:
                    ax.set_yticklabels([])
            else:
                ax.imshow(mat, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
                ax.set(title=titles[k], xticks=[], yticks=[])
        fig.tight_layout()
        box.last_figure, box.last_views, box.last_similarity = fig, views, r
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(fig)
        return fig

    box.controls = {"subject": subject_dd, "drop_fraction": frac, "seed": seed_box}
    box.output, box.info, box.redraw = out, info, redraw
    box.last_figure, box.last_views, box.last_similarity = None, None, None
    for w in (subject_dd, frac, seed_box):
        w.observe(redraw, names="value")
    redraw()
    return box


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
    from matplotlib.figure import Figure

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
        # a Figure outside pyplot: shown only in the widget, never again by the inline backend
        fig = Figure(figsize=(9, 3.4))
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


def plot_representation_checks(
    identification: pd.DataFrame,
    site: pd.DataFrame,
    *,
    figure: Any = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Two bar panels: session-to-session identification and site decoding per representation.

    Parameters
    ----------
    identification : pandas.DataFrame
        :func:`bmlib.evaluation.identification_table` output (``accuracy``, ``chance``; index:
        representation).
    site : pandas.DataFrame
        :func:`bmlib.evaluation.site_decoding_table` output (``balanced_accuracy``, ``chance``).
    figure : matplotlib.figure.Figure, optional
    output_file : path, optional
        Save there; nothing is written otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        Dashed lines mark chance; a good pretrained encoder is high on the left (individuals are
        told apart) and low on the right (little scanner information).
    """
    import matplotlib.pyplot as plt

    for name, frame, col in (("identification", identification, "accuracy"), ("site", site, "balanced_accuracy")):
        if not isinstance(frame, pd.DataFrame) or col not in frame.columns or "chance" not in frame.columns:
            raise ValueError(f"expected {name} as a DataFrame with columns {col!r} and 'chance', got {type(frame).__name__}"
                             + (f" with columns {list(frame.columns)}" if isinstance(frame, pd.DataFrame) else ""))  # fmt: skip
    fig = figure if figure is not None else plt.figure(figsize=(10, 3.5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = ((identification, "accuracy", "session-to-session identification", "accuracy"),
              (site, "balanced_accuracy", "site decoding (lower = less site)", "balanced accuracy"))  # fmt: skip
    for ax, (frame, col, title, ylabel) in zip(axes, panels, strict=True):
        colors = [f"C{i}" for i in range(len(frame))]
        ax.bar([str(i) for i in frame.index], frame[col].to_numpy(dtype=float), color=colors)
        ax.axhline(float(frame["chance"].iloc[0]), ls="--", color="k", lw=1, label="chance")
        ax.set(title=title, ylabel=ylabel, ylim=(0, 1.05))
        ax.legend(loc="upper left", frameon=False)
    _save(fig, output_file)
    return fig


def plot_network_bars_by_task(
    networks: pd.DataFrame,
    atlas: Any,
    *,
    method: str,
    reference: float | None = 1.0,
    figure: Any = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """One :func:`plot_network_bars` panel per task for one method, stacked, shared x axis.

    Parameters
    ----------
    networks : pandas.DataFrame
        ``TaskSetInterpretation.networks`` (columns ``task``, ``method``, ``network``,
        ``importance``, ``p_value``).
    atlas : Atlas
        Network colours.
    method : str
        Which method's network summary to show.
    reference : float or None, default=1.0
        Dashed reference line (1 = a network's average share).
    figure : matplotlib.figure.Figure, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    need = {"task", "method", "network", "importance"}
    if not isinstance(networks, pd.DataFrame) or not need <= set(networks.columns):
        raise ValueError(f"expected a networks DataFrame with columns {sorted(need)}")
    rows = networks[networks["method"] == method]
    if rows.empty:
        raise ValueError(f"no rows for method {method!r}; methods are {sorted(networks['method'].unique())}")
    tasks = list(dict.fromkeys(rows["task"]))
    fig = figure if figure is not None else plt.figure(figsize=(7, 2.2 * len(tasks)))
    axes = fig.subplots(len(tasks), 1, sharex=True, squeeze=False)[:, 0]
    p_col = "p_value" if "p_value" in rows.columns else None
    for ax, task in zip(axes, tasks, strict=True):
        plot_network_bars(rows[rows["task"] == task], p_col=p_col, axes=ax, title=task, reference=reference,
                          palette=network_colors(atlas))  # fmt: skip
        ax.set(xlabel="", ylabel="share")
    fig.suptitle(f"{method}: each network's share of the map (1 = average)")
    fig.tight_layout()
    _save(fig, output_file)
    return fig


def export_brain_3d(
    maps: Mapping[str, Mapping[str, Any]],
    atlas: Any,
    out_dir: str | os.PathLike[str],
    *,
    method: str,
    surface: bool = True,
    include_plotlyjs: bool | str = "directory",
) -> dict[str, Any]:
    """A :func:`brain_3d` figure of one method's group map per task, saved as ``<task>_brain3d.html``.

    Parameters
    ----------
    maps : mapping task -> (mapping method -> GroupMap or array (R,))
        E.g. ``TaskSetInterpretation.maps("group")``.
    atlas : Atlas
    out_dir : path
        Folder receiving the HTML files (created if missing).
    method : str
        Which method's map to draw.
    surface : bool, default=True
        Draw the translucent cortical mesh.
    include_plotlyjs : bool or str, default="directory"
        As in :func:`save_figure`; ``"directory"`` writes one shared ``plotly.min.js``.

    Returns
    -------
    dict task -> plotly Figure
    """
    if not maps:
        raise ValueError("expected at least one task in maps, got none")
    missing = [task for task, per_method in maps.items() if method not in per_method]
    if missing:
        raise ValueError(f"method {method!r} is missing for tasks {missing}")
    out = Path(out_dir)
    figures = {}
    for task, per_method in maps.items():
        entry = per_method[method]
        roi = entry.roi if hasattr(entry, "roi") else entry
        figures[task] = brain_3d(roi, atlas, title=f"{task}: {method}", surface=surface)
        save_figure(figures[task], out / f"{task}_brain3d.html", include_plotlyjs=include_plotlyjs)
    return figures


def plot_training_history(
    history: pd.DataFrame,
    columns: Sequence[str] = ("loss", "mrm", "lra", "emb_std"),
    *,
    x: str = "step",
    figure: Any = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """One panel per logged quantity of a pretraining history (``FitResult.history``).

    Parameters
    ----------
    history : pandas.DataFrame
        Per-step rows with ``x`` and the ``columns``; columns it lacks are skipped.
    columns : sequence of str, default=("loss", "mrm", "lra", "emb_std")
    x : str, default="step"
    figure : matplotlib.figure.Figure, optional
    output_file : path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not isinstance(history, pd.DataFrame) or x not in history.columns:
        raise ValueError(f"expected a history DataFrame with a {x!r} column")
    shown = [c for c in columns if c in history.columns]
    if not shown:
        raise ValueError(f"none of {list(columns)} is a column of the history ({list(history.columns)})")
    fig = figure if figure is not None else plt.figure(figsize=(4 * len(shown), 3))
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    for ax, col in zip(axes, shown, strict=True):
        ax.plot(history[x].to_numpy(), history[col].to_numpy(dtype=float))
        ax.set(title=col, xlabel=x)
    fig.tight_layout()
    _save(fig, output_file)
    return fig


# ----------------------------------------------------------------------------- sweeps
def plot_sweep(
    table: pd.DataFrame,
    parameters: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    max_panels: int = 6,
    figure: Any = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Compare the runs of a parameter sweep: one panel per metric, against the swept values.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`bmlib.runner.run_sweep`'s table (one row per grid point: parameter values,
        ``status``, ``wall_s`` and the runs' flattened metrics).
    parameters : sequence of str
        Swept parameter columns: the first is the x axis, the second (if any) the colour; rows
        that share both are averaged (seaborn's mean and 95% interval).
    metrics : sequence of str, optional
        Metric columns to show (default: every numeric metric column that varies across runs,
        then ``wall_s``; at most ``max_panels``).
    max_panels : int, default=6
    figure : matplotlib.figure.Figure, optional
        Figure to draw in (a new one by default).
    output_file : path, optional
        Save the figure there (PNG/SVG/PDF); nothing is written otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        Failed runs are left out of the panels and counted in the title.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError("expected the non-empty DataFrame returned by run_sweep")
    params = [parameters] if isinstance(parameters, str) else list(parameters)
    missing = [p for p in params if p not in table.columns]
    if not params or missing:
        raise ValueError(f"expected swept parameter columns of the table, got {params} (missing {missing}); "
                         f"columns are {list(table.columns)}")  # fmt: skip
    ok = table[table["status"] == "ok"] if "status" in table.columns else table
    bookkeeping = {"status", "run_id", "failed_notebook", "wall_s", *params}
    if metrics is None:
        numeric = [c for c in ok.columns if c not in bookkeeping and pd.api.types.is_numeric_dtype(ok[c])
                   and not pd.api.types.is_bool_dtype(ok[c]) and ok[c].nunique(dropna=True) > 1]  # fmt: skip
        metrics = [*numeric[: max(0, max_panels - 1)], "wall_s"]
    metrics = [m for m in metrics if m in table.columns]
    if not metrics:
        raise ValueError(f"none of the requested metrics are columns of the table ({list(table.columns)})")
    n_failed = len(table) - len(ok)
    fig = figure if figure is not None else plt.figure(figsize=(4.2 * min(len(metrics), 3), 3.4 * -(-len(metrics) // 3)))
    axes = fig.subplots(-(-len(metrics) // 3), min(len(metrics), 3), squeeze=False).ravel()
    hue = params[1] if len(params) > 1 and ok[params[1]].nunique() > 1 else None
    data = ok.assign(**{params[0]: ok[params[0]].astype(str)})
    for ax, metric in zip(axes, metrics, strict=False):
        if data[metric].notna().any():
            sns.pointplot(data=data, x=params[0], y=metric, hue=hue, ax=ax, errorbar=("ci", 95),
                          dodge=0.2 if hue else False, palette="viridis" if hue else None)  # fmt: skip
        ax.set(title=metric, xlabel=params[0], ylabel="")
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"sweep over {', '.join(params)}: {len(ok)} runs" + (f" ({n_failed} failed, not shown)" if n_failed else ""))
    fig.tight_layout()
    _save(fig, output_file)
    return fig


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


# ----------------------------------------------------------------------------- pretraining views
def plot_reconstruction(
    reconstruction: Any,
    *,
    scan: int = 0,
    atlas: Any = None,
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    axes: Sequence[Any] | None = None,
    figure: Any = None,
    title: str | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Masked-ROI reconstruction of one scan: true rows, predicted rows and their scatter.

    Parameters
    ----------
    reconstruction : bmlib.interpret.MaskedReconstruction
        From :func:`bmlib.interpret.reconstruct_masked`.
    scan : int, default=0
        Which scan of the reconstruction to draw.
    atlas : Atlas, optional
        Labels the masked ROIs and orders the columns by network (with network names);
        default: ROI indices in their own order.
    cmap : str, default="RdBu_r"
    vmax : float, optional
        Shared colour limit of both heatmaps (default: largest scored ``|value|``).
    axes : sequence of 3 matplotlib Axes, optional
        Truth heatmap, prediction heatmap, scatter. Default: a new 1 x 3 figure.
    figure : matplotlib Figure, optional
        Figure to draw the three panels in when ``axes`` is None.
    title : str, optional
        Figure title.
    output_file : path, optional
        Save the figure there (the figure is still returned).

    Returns
    -------
    matplotlib.figure.Figure
        Heatmaps of the masked ROIs' FC rows (rows: masked ROIs; own diagonal entries blank
        when they were left out of the scores) and a scatter of true versus predicted
        entries with Pearson r (and the reference's, when the reconstruction has one).
    """
    import matplotlib.pyplot as plt

    needed = ("truth", "predicted", "indices", "pairs", "exclude_diagonal")
    if not all(hasattr(reconstruction, a) for a in needed):
        raise TypeError(
            f"expected a MaskedReconstruction (bmlib.interpret.reconstruct_masked), got {type(reconstruction).__name__}"
        )
    truth_all, pred_all = np.asarray(reconstruction.truth), np.asarray(reconstruction.predicted)
    n, k, r = truth_all.shape
    if not isinstance(scan, (int, np.integer)) or not -n <= scan < n:
        raise IndexError(f"expected a scan index in [0, {n}), got {scan!r}")
    idx = np.asarray(reconstruction.indices)[scan]  # (k,)
    order = np.arange(r)
    labels = [f"ROI {i}" for i in range(r)]
    if atlas is not None:
        labels, networks, _ = _atlas_fields(atlas, r)
        order = network_order(atlas)
    truth, pred = truth_all[scan].astype(np.float64), pred_all[scan].astype(np.float64)  # (k, R)
    if reconstruction.exclude_diagonal:
        truth[np.arange(k), idx] = np.nan
        pred[np.arange(k), idx] = np.nan
    if vmax is None:
        vmax = _symmetric_limit(np.concatenate([truth[np.isfinite(truth)], pred[np.isfinite(pred)]]))
    if axes is None:
        fig = figure if figure is not None else plt.figure(figsize=(15, 0.22 * k + 3.2), layout="constrained")
        axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 3, 2]})
    if len(axes) != 3:
        raise ValueError(f"expected 3 axes (truth, prediction, scatter), got {len(axes)}")
    ax_t, ax_p, ax_s = axes
    fig = ax_t.figure
    for ax, rows, name in ((ax_t, truth, "true FC rows"), (ax_p, pred, "reconstructed rows")):
        im = ax.imshow(rows[:, order], aspect="auto", cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_yticks(np.arange(k))
        ax.set_yticklabels([labels[i] for i in idx] if ax is ax_t else [], fontsize=7)
        ax.set_title(f"{name} of the {k} masked ROIs")
        if atlas is not None:
            nets = np.asarray(networks)[order]
            names = _network_names(atlas)
            starts = [int(np.flatnonzero(nets == m)[0]) for m in names if (nets == m).any()]
            sizes = [int((nets == m).sum()) for m in names if (nets == m).any()]
            for s in starts[1:]:
                ax.axvline(s - 0.5, color="k", lw=0.6)
            ax.set_xticks([s + (z - 1) / 2 for s, z in zip(starts, sizes, strict=True)])
            ax.set_xticklabels([m for m in names if (nets == m).any()], rotation=90, fontsize=7)
        else:
            ax.set_xlabel("ROI (column of FC)")
    fig.colorbar(im, ax=[ax_t, ax_p], fraction=0.025, pad=0.01, label="FC (r)")
    t, p = reconstruction.pairs(scan)
    r_pred = float(np.corrcoef(t, p)[0, 1]) if t.size > 1 else float("nan")
    ax_s.scatter(t, p, s=6, alpha=0.5, color="C0", label=f"MRM head, r = {r_pred:.2f}")
    ref = getattr(reconstruction, "reference", None)
    if ref is not None:
        keep = reconstruction.scored()[scan]
        ref_vals = np.asarray(ref)[scan][keep]
        r_ref = float(np.corrcoef(t, ref_vals)[0, 1]) if t.size > 1 else float("nan")
        ax_s.scatter(t, ref_vals, s=6, alpha=0.35, color="0.55", label=f"reference, r = {r_ref:.2f}")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax_s.plot([lo, hi], [lo, hi], ls="--", color="k", lw=0.8)
    ax_s.set_xlabel("true FC")
    ax_s.set_ylabel("predicted FC")
    ax_s.set_title("masked entries")
    ax_s.legend(loc="upper left", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    _save(fig, output_file)
    return fig


def plot_embedding_projection(
    frame: pd.DataFrame,
    *,
    hue: str = "site",
    style: str | None = None,
    palette: str | Mapping[str, str] | None = None,
    axes: Any = None,
    title: str | None = None,
    legend: bool = True,
    output_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Scatter of a 2-D embedding projection coloured by a metadata column (seaborn).

    Parameters
    ----------
    frame : DataFrame
        :func:`bmlib.evaluation.project_embeddings` output (columns ``x``, ``y`` and metadata).
    hue : str, default="site"
        Column that colours the points (e.g. ``"site"``, ``"dataset"``).
    style : str, optional
        Column that sets the marker (e.g. ``"dataset"`` while colouring by site).
    palette : str or mapping, optional
        Seaborn palette (default: ``"tab20"`` for more than 10 categories, else ``"tab10"``).
    axes : matplotlib Axes, optional
    title : str, optional
    legend : bool, default=True
        Draw the legend outside the axes, on the right.
    output_file : path, optional

    Returns
    -------
    matplotlib.axes.Axes
        Axis labels name the method (``PC1 (23% var.)`` for PCA, ``t-SNE 1`` for t-SNE).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a DataFrame from project_embeddings, got {type(frame).__name__}")
    needed = ["x", "y", hue] + ([style] if style is not None else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"expected columns {needed}, missing {missing} (columns: {list(frame.columns)})")
    data = frame.assign(**{c: frame[c].astype(str).to_numpy() for c in {hue, style} - {None}})
    n_hue = data[hue].nunique()
    if palette is None:
        palette = "tab20" if n_hue > 10 else "tab10"
    if axes is None:
        _, axes = plt.subplots(figsize=(6.5, 5))
    size = float(np.clip(3000 / max(len(data), 1), 6, 24))  # smaller, lighter dots for thousands of scans
    sns.scatterplot(data=data, x="x", y="y", hue=hue, style=style, palette=palette, s=size,
                    alpha=0.8 if len(data) < 500 else 0.55, linewidth=0, ax=axes,
                    legend="auto" if legend else False)  # fmt: skip
    method = frame.attrs.get("method", "pca")
    evr = frame.attrs.get("explained_variance_ratio")
    if method == "pca":
        names = [f"PC{i + 1}" + (f" ({evr[i]:.0%} var.)" if evr is not None and i < len(evr) else "") for i in (0, 1)]
    else:
        names = ["t-SNE 1", "t-SNE 2"]
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    if legend and axes.get_legend() is not None:
        sns.move_legend(axes, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title_fontsize=8,
                        frameon=False, ncol=2 if n_hue > 12 else 1)  # fmt: skip
    if title:
        axes.set_title(title)
    _save(axes.figure, output_file)
    return axes
