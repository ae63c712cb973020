"""Figures of a scaling-law analysis in the form of the paper's Figure 5 (matplotlib, Agg).

Left: training curves of loss vs FLOPs coloured by model size, with the efficient frontier, the
loss prediction ``L_opt(C)`` and the parametric law drawn in. Middle and right: ``N_opt`` and
``D_opt`` vs compute with the fitted power laws and their bootstrap confidence bands.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from offline_data.atomic import atomic_file
from scaling.laws.analysis import Analysis

logger = logging.getLogger(__name__)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically (never half-written); close it.

    Returns the path.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def _band(boot, which: str, C: np.ndarray, level: float):
    """Percentile band of ``x0 C^x`` over bootstrap samples (``which`` is 'N' or 'D')."""
    s = boot.samples
    k0, k = ("a0", "a") if which == "N" else ("b0", "b")
    if k0 not in s or s[k0].size < 2:
        return None
    logy = np.log(s[k0])[:, None] + s[k][:, None] * np.log(C)[None, :]
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return np.exp(np.percentile(logy, lo, axis=0)), np.exp(np.percentile(logy, hi, axis=0))


def figure5(analysis: Analysis, path: str | Path, title: str | None = None,
            crossings: list[tuple[float, float]] | None = None) -> Path:
    """Write the three-panel figure to ``path`` (PNG) and return the path.

    ``crossings``: (C, loss) points where the budget protocol saw a larger size cross below its
    smaller neighbour, marked on the training curves.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    c = analysis.curves
    level = analysis.options.level
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.88, wspace=0.34)
    sizes = c.curve_N
    norm = colors.LogNorm(vmin=sizes.min(), vmax=sizes.max() * (1.0001 if np.ptp(sizes) == 0
                                                               else 1.0))
    cmap = plt.get_cmap("viridis")
    ax = axes[0]
    for i, sl in enumerate(c.curve_slices()):
        col = cmap(norm(sizes[i]))
        ax.plot(c.C[sl], c.L[sl], color=col, lw=1.2, alpha=0.9)
        p = analysis.parametric
        if p is not None:
            ax.plot(c.C[sl], p.predict(c.N[sl], c.D[sl]), color=col, lw=0.8, ls="--", alpha=0.8)
    env = analysis.frontier.envelope if analysis.frontier is not None else None
    if env is not None:
        ok = env.bracketed
        ax.plot(np.where(ok, env.C, np.nan), np.where(ok, env.L, np.nan), color="k", lw=2.2,
                alpha=0.5, label="efficient frontier")
    lp = analysis.loss_prediction
    Cx = np.geomspace(c.C.min(), c.C.max() * 10, 200)
    if lp is not None:
        ax.plot(Cx, lp.predict(Cx), color="k", ls=":", lw=1.5,
                label=f"$L_{{opt}} = {lp.c0:.3g}\\,C^{{-{lp.c:.3f}}} + {lp.E:.3g}$"
                      + ("\n(censored envelope)" if lp.censored else ""))
    if crossings:
        ax.scatter([x for x, _ in crossings], [y for _, y in crossings], marker="x", color="k",
                   s=40, zorder=4, label="crossing (protocol)")
    if analysis.parametric is not None:
        ax.plot([], [], color="grey", ls="--", label=f"parametric fit ({analysis.parametric.loss})")
    ax.set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel="loss L",
           title="training curves and parametric fit")
    # the losses set the scale: a law drawn over the early points may run far above them
    ax.set_ylim(float(np.min(c.L)) / 1.1, float(np.max(c.L)) * 1.1)
    # loss falls with compute: the upper right is empty, the lower left holds crossings
    ax.legend(fontsize=8, loc="upper right")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="parameters N")
    for ax, which in ((axes[1], "N"), (axes[2], "D")):
        _allocation_panel(ax, analysis, which, Cx, level)
    if title:
        fig.suptitle(title)
        fig.subplots_adjust(top=0.84)
    return save_figure(fig, path)


def _allocation_panel(ax, analysis: Analysis, which: str, Cx: np.ndarray, level: float) -> None:
    fr, pa, iso = analysis.frontier, analysis.parametric, analysis.isoflop
    sym = "N" if which == "N" else "D"
    exp_key = "a" if which == "N" else "b"
    if fr is not None:
        pts = fr.points_N if which == "N" else fr.points_C / (6 * fr.points_N)
        ax.scatter(fr.points_C, pts, color="C0", zorder=3, s=22, label="frontier points")
        env = fr.envelope
        ok = env.bracketed
        yv = env.N if which == "N" else env.C / (6 * env.N)
        ax.plot(env.C[ok], yv[ok], ".", color="C0", ms=1.5, alpha=0.3)
        y = fr.optimal(Cx)[0 if which == "N" else 1]
        ax.plot(Cx, y, color="C0", label=f"frontier: ${sym}_{{opt}} \\propto C^{{"
                                         f"{getattr(fr, exp_key):.3f}}}$")
        band = _band(analysis.boot["frontier"], which, Cx, level) if (
            "frontier" in analysis.boot) else None
        if band is not None:
            ax.fill_between(Cx, *band, color="C0", alpha=0.2, lw=0,
                            label=f"{level:.0%} bootstrap band")
    if pa is not None:
        y = pa.optimal(Cx)[0 if which == "N" else 1]
        ax.plot(Cx, y, color="C3", ls="--", label=f"parametric: ${sym}_{{opt}} \\propto C^{{"
                                                  f"{getattr(pa, exp_key):.3f}}}$")
        band = _band(analysis.boot["parametric"], which, Cx, level) if (
            "parametric" in analysis.boot) else None
        if band is not None:
            ax.fill_between(Cx, *band, color="C3", alpha=0.12, lw=0)
    if iso is not None:
        pts = iso.N_opt if which == "N" else iso.budgets / (6 * iso.N_opt)
        label = f"IsoFLOP minima (${exp_key}$ = {getattr(iso, exp_key):.3f})"
        if iso.shared_budgets:
            ax.scatter(iso.budgets, pts, marker="x", color="C2", zorder=3, label=label)
        else:  # a dense interpolated grid reads as a curve
            ax.plot(iso.budgets, pts, ".", ms=2, color="C2", zorder=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="FLOPs C",
           ylabel=f"optimal {'parameters' if which == 'N' else 'tokens'} ${sym}_{{opt}}$",
           title=f"${sym}_{{opt}}$ vs compute")
    ax.legend(fontsize=8)
