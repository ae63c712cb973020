"""All fits on one set of curves, with bootstrap intervals and the extrapolation check.

:func:`analyze` is what ``embscale fit`` runs; :meth:`Analysis.to_json` is ``fit.json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from scaling.laws._threads import single_threaded_blas
from scaling.laws.batched import bootstrap_huber
from scaling.laws.data import Curves, FitError, size_key
from scaling.laws.frontier import (
    FRONTIER_POINTS,
    POOLS,
    FrontierFit,
    LossPrediction,
    envelope,
    fit_frontier,
    fit_loss_prediction,
)
from scaling.laws.identification import (
    MIN_REFITS_FOR_WIDTH,
    bound_caveats,
    bound_issues,
    frontier_issues,
    isoflop_issues,
    loss_prediction_issues,
)
from scaling.laws.isoflop import IsoflopFit, fit_isoflop
from scaling.laws.parametric import ParametricFit, fit_huber, fit_lsq, lsq_theta
from scaling.laws.uncertainty import (
    SCHEMES,
    Bootstrap,
    bootstrap,
    coarse_runs_note,
    effective_scheme,
)

logger = logging.getLogger(__name__)

METHODS = ("frontier", "parametric", "isoflop")
SCHEMA = "embscale.fit/2"


@dataclass(frozen=True)
class FitOptions:
    """Options of :func:`analyze`."""

    methods: tuple[str, ...] = METHODS
    """fits to run, from ``frontier``, ``parametric``, ``isoflop`` (loss prediction always runs)"""
    parametric_loss: str = "huber"
    """parametric objective: ``huber`` (Hoffmann/Epoch) or ``lsq`` (the paper's curve_fit)"""
    num_bootstrap: int = 1000
    """bootstrap refits per method (0 for no intervals)"""
    bootstrap_scheme: str = "runs"
    """resampling: ``runs`` (whole curves), ``within-run`` or ``points`` (see uncertainty.py)"""
    seed: int = 0
    """seed of the bootstrap resampling"""
    level: float = 0.95
    """confidence level of the intervals"""
    smooth: int = 0
    """window (points) of log-loss smoothing before the envelope; 0 or 1 for none"""
    num_grid: int = 1000
    """compute grid points of the envelope"""
    num_starts: int = 16
    """starts (best of Hoffmann's grid) of the Huber and least-squares fits"""
    frontier_points: str = "vertex"
    """frontier regression points: ``vertex``, ``grid`` (Hoffmann) or ``midpoint``"""
    pool: str = "mean"
    """runs of one size pooled by the ``mean`` of their log losses (seeds) or their ``min``
    (runs of one size with different schedules); envelope, frontier and IsoFLOP fits"""
    extrapolation: bool = True
    """refit without the largest-compute run and report how well it is predicted"""

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods}; use e.g. ('frontier', 'parametric')")
        if self.parametric_loss not in ("huber", "lsq"):
            raise ValueError(f"parametric_loss must be 'huber' or 'lsq', got "
                             f"{self.parametric_loss!r}")
        if self.num_bootstrap < 0:
            raise ValueError(f"num_bootstrap must be >= 0, got {self.num_bootstrap}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}; use e.g. 0.95")
        if self.num_grid < 10:
            raise ValueError(f"num_grid must be >= 10, got {self.num_grid}")
        if self.frontier_points not in FRONTIER_POINTS:
            raise ValueError(f"frontier_points must be one of {FRONTIER_POINTS}, got "
                             f"{self.frontier_points!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}; use 'mean' when "
                             f"runs of one size are seeds, 'min' when they differ in schedule")
        if self.bootstrap_scheme not in SCHEMES:
            raise ValueError(f"bootstrap_scheme must be one of {SCHEMES}, got "
                             f"{self.bootstrap_scheme!r}; use 'runs' (whole curves)")


@dataclass
class Analysis:
    """Results of :func:`analyze`: fitted objects, intervals, and reasons for skipped fits."""

    curves: Curves
    options: FitOptions
    frontier: FrontierFit | None = None
    parametric: ParametricFit | None = None
    loss_prediction: LossPrediction | None = None
    isoflop: IsoflopFit | None = None
    boot: dict[str, Bootstrap] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ci_errors: dict[str, str] = field(default_factory=dict)
    extrapolation: dict | None = None
    law_curves: Curves | None = None
    """points of the parametric fit when they differ from ``curves`` (see analyze)"""

    def ci(self, name: str) -> dict[str, list[float]]:
        """Intervals of method ``name`` (empty without bootstrap)."""
        return self.boot[name].ci() if name in self.boot else {}

    def judged_ci(self, name: str) -> dict[str, list[float]] | None:
        """The intervals the identification checks judge (None: too few refits succeeded).

        Below :data:`MIN_REFITS_FOR_WIDTH` accepted refits a zero width means nothing.
        """
        boot = self.boot.get(name)
        if boot is None or boot.num_requested - boot.num_failed < MIN_REFITS_FOR_WIDTH:
            return None
        return boot.ci()

    def bootstrap_summary(self) -> dict:
        """Scheme, refits and failed refits of every bootstrapped method."""
        o = self.options
        return {"scheme": effective_scheme(self.curves, o.bootstrap_scheme) if o.num_bootstrap
                else "none", "requested_scheme": o.bootstrap_scheme, "num": o.num_bootstrap,
                "level": o.level, "seed": o.seed,
                "num_failed": {k: b.num_failed for k, b in self.boot.items()},
                "no_interval": dict(self.ci_errors)}

    def to_json(self) -> dict:
        """The ``fit.json`` object."""
        c = self.curves
        curves = []
        for i, sl in enumerate(c.curve_slices()):
            curves.append({"name": c.names[i], "N": float(c.curve_N[i]),
                           "num_points": sl.stop - sl.start, "C_min": float(c.C[sl].min()),
                           "C_max": float(c.C[sl].max()), "L_min": float(c.L[sl].min())})
        out = {"schema": SCHEMA, "data": {"num_points": c.num_points,
                                          "num_curves": c.num_curves, "curves": curves},
               "options": {**asdict(self.options), "methods": list(self.options.methods)},
               "bootstrap": self.bootstrap_summary()}
        if self.law_curves is not None:
            out["data"]["law_points"] = self.law_curves.num_points
        fits = {"frontier": self.frontier, "parametric": self.parametric,
                "loss_prediction": self.loss_prediction, "isoflop": self.isoflop}
        for name, fit in fits.items():
            if fit is None:
                reason = self.skipped.get(name, "not requested (see --method)")
                out[name] = {"status": "skipped", "reason": reason}
                continue
            entry = {"status": "ok", **fit.coefficients(), "ci": self.ci(name)}
            if name in self.boot:
                entry["bootstrap"] = self.boot[name].summary()
                if name in ("frontier", "parametric"):
                    entry["bootstrap"]["samples"] = self.boot[name].json_samples(("a", "b"))
            if name in self.ci_errors:
                entry["ci_error"] = self.ci_errors[name]
            if name == "parametric":
                judged = self.judged_ci(name)
                entry.update(loss=fit.loss, objective=fit.objective, num_points=fit.num_points,
                             r2=fit.r2, not_identified=bound_issues(fit, judged),
                             caveats=bound_caveats(fit, judged))
            elif name == "frontier":
                env = fit.envelope
                entry.update(num_models=fit.num_models, rule=self.options.frontier_points,
                             pool=self.options.pool,
                             not_identified=frontier_issues(fit.num_models, fit.a,
                                                             self.judged_ci(name)),
                             points={"C": fit.points_C.tolist(), "N": fit.points_N.tolist()},
                             optimal_N=sorted({float(c.curve_N[i])
                                               for i in np.unique(env.winner[env.bracketed])}))
            elif name == "loss_prediction":
                entry.update(num_points=fit.num_points, censored=fit.censored,
                             not_identified=loss_prediction_issues(fit, self.judged_ci(name)))
            elif name == "isoflop":
                cand = fit.candidate_budgets
                entry.update(shared_budgets=fit.shared_budgets,
                             budgets_used=fit.budgets.tolist(),
                             budgets_considered=[] if cand is None else cand.tolist(),
                             points={"C": fit.budgets.tolist(), "N": fit.N_opt.tolist()},
                             not_identified=isoflop_issues(fit.a, self.judged_ci(name)))
            out[name] = entry
        out["extrapolation"] = (self.extrapolation if self.extrapolation is not None else
                                {"status": "skipped",
                                 "reason": self.skipped.get("extrapolation", "not requested")})
        return out


def _parametric(curves: Curves, opts: FitOptions, init=None) -> ParametricFit:
    if opts.parametric_loss == "huber":
        if init is not None:
            try:
                return fit_huber(curves, init=init)
            except FitError:
                pass  # fall back to the grid
        return fit_huber(curves, num_starts=opts.num_starts)
    return fit_lsq(curves, init=init, num_starts=opts.num_starts)


def _fit_all(curves: Curves, opts: FitOptions, res: Analysis) -> None:
    law = res.law_curves if res.law_curves is not None else curves
    env = envelope(curves, num_grid=opts.num_grid, smooth=opts.smooth, pool=opts.pool)
    if "frontier" in opts.methods:
        try:
            res.frontier = fit_frontier(curves, env=env, points=opts.frontier_points,
                                        pool=opts.pool)
        except FitError as e:
            res.skipped["frontier"] = str(e)
    try:
        res.loss_prediction = fit_loss_prediction(curves, env=env)
    except FitError as e:
        res.skipped["loss_prediction"] = str(e)
    if "parametric" in opts.methods:
        try:
            res.parametric = _parametric(law, opts)
        except FitError as e:
            res.skipped["parametric"] = str(e)
    if "isoflop" in opts.methods:
        try:
            res.isoflop = fit_isoflop(curves, smooth=opts.smooth, pool=opts.pool)
        except FitError as e:
            res.skipped["isoflop"] = str(e)


def analyze(curves: Curves, options: FitOptions | None = None,
            progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
            law_curves: Curves | None = None) -> Analysis:
    """Run the requested fits, their bootstrap intervals and the extrapolation check.

    A method the data cannot support is recorded in ``Analysis.skipped`` with the reason and
    does not stop the others.

    Args:
        curves: the points.
        options: what to fit; default :class:`FitOptions`.
        progress: ``progress(description, total)`` returns a per-refit callback (or None).
        law_curves: other points for the parametric fit (default ``curves``): the methods that
            compare sizes at equal compute (frontier, loss prediction, IsoFLOP) want each
            curve's whole trained range, a law ``L(N, D)`` only the part past the start of
            training.

    Raises:
        FitError: when every requested fit was skipped (the message gives each reason).
    """
    with single_threaded_blas():
        return _analyze(curves, options or FitOptions(), progress, law_curves)


def _analyze(curves, opts, progress, law_curves=None) -> Analysis:
    res = Analysis(curves=curves, options=opts, law_curves=law_curves)
    _fit_all(curves, opts, res)
    if all(getattr(res, m) is None for m in opts.methods):
        reasons = "; ".join(f"{m}: {res.skipped[m]}" for m in opts.methods)
        raise FitError(f"no fit succeeded. {reasons}")
    if opts.num_bootstrap:
        _bootstrap_all(curves, opts, res, progress)
    if opts.extrapolation:
        try:
            res.extrapolation = extrapolation_check(curves, opts, law_curves=law_curves)
        except FitError as e:
            res.skipped["extrapolation"] = str(e)
    return res


def _bootstrap_all(curves, opts, res, progress) -> None:
    law = res.law_curves if res.law_curves is not None else curves
    kw = {"num": opts.num_bootstrap, "seed": opts.seed, "level": opts.level,
          "scheme": opts.bootstrap_scheme}

    def cb(name):
        return progress(f"bootstrap {name}", opts.num_bootstrap) if progress else None

    if note := coarse_runs_note(effective_scheme(curves, opts.bootstrap_scheme),
                                curves.num_curves):
        logger.warning("%s", note)  # once for every method's intervals

    runs = {}
    if res.frontier is not None:
        runs["frontier"] = lambda: bootstrap(curves, lambda c: fit_frontier(
            c, num_grid=opts.num_grid, smooth=opts.smooth, points=opts.frontier_points,
            pool=opts.pool).coefficients(), progress=cb("frontier"), **kw)
    if res.loss_prediction is not None:
        lp = res.loss_prediction
        init = (lp.c0 * math.exp(-lp.c * np.log(curves.C).mean()), lp.c, lp.E)
        runs["loss_prediction"] = lambda: bootstrap(curves, lambda c: fit_loss_prediction(
            c, num_grid=opts.num_grid, smooth=opts.smooth, init=init,
            pool=opts.pool).coefficients(),
            progress=cb("loss_prediction"), **kw)
    if res.parametric is not None and opts.parametric_loss == "huber":
        runs["parametric"] = lambda: bootstrap_huber(law, res.parametric,
                                                     num_starts=opts.num_starts,
                                                     progress=cb("parametric"), **kw)
    elif res.parametric is not None:
        # Warm starts: the full-data optimum and the other distinct optima its starts reached.
        theta = np.vstack([lsq_theta(res.parametric), *res.parametric.optima[1:3]])
        runs["parametric"] = lambda: bootstrap(
            law, lambda c: _parametric(c, opts, init=theta).coefficients(),
            progress=cb("parametric"), **kw)
    if res.isoflop is not None:
        runs["isoflop"] = lambda: bootstrap(
            curves, lambda c: fit_isoflop(c, smooth=opts.smooth, pool=opts.pool).coefficients(),
            progress=cb("isoflop"), **kw)
    for name, run in runs.items():
        try:
            res.boot[name] = run()
        except FitError as e:  # the point estimate stands; its interval is not available
            res.ci_errors[name] = str(e)
            logger.warning("no interval for %s: %s", name, e)


def extrapolation_check(curves: Curves, options: FitOptions | None = None,
                        law_curves: Curves | None = None) -> dict:
    """Refit without the run that reached the largest compute and predict that run (Section 4.3).

    Every run of that run's model size (its other seeds) is left out of the refit too, so the
    refit sees neither that size nor that compute, and the check is an extrapolation.

    Reports the loss predicted at its last point (loss prediction and parametric law), and, as
    in the paper, the point of the held-out curve whose loss is closest to the extrapolated
    ``L_opt(C)``, with the ``N_opt`` and ``D_opt`` the laws predict at its compute beside its
    actual N and D.

    ``law_curves``: the parametric fit's own points (see :func:`analyze`), without the same run.

    Raises:
        FitError: when fewer than two model sizes remain, or no law could be fitted without it.
    """
    opts = options or FitOptions()
    slices = curves.curve_slices()
    ends = np.array([curves.C[sl].max() for sl in slices])
    size = size_key(curves.curve_N)
    # the run reaching the most compute; of runs ending together, the largest size
    held = int(np.lexsort((size, np.round(np.log(ends), 9)))[-1])
    drop = np.flatnonzero(size == size[held])  # the held-out run and the other seeds of its size
    rest = curves.without_curves(drop)
    if np.unique(size_key(rest.N)).size < 2:
        raise FitError("extrapolation check needs two model sizes besides the held-out run")
    if rest.C.max() >= ends[held] * (1 - 1e-9):
        raise FitError("extrapolation check: other sizes reach the held-out run's compute "
                       f"({ends[held]:.3g} FLOPs; runs ending at designed budgets), so predicting "
                       "it would be an interpolation")
    dropped = [curves.names[i] for i in drop]
    law_rest = None
    if law_curves is not None:  # the parametric refit leaves out the same runs from its points
        names = list(law_curves.names)
        law_rest = law_curves.without_curves([names.index(n) for n in dropped if n in names])
    sub = Analysis(curves=rest, options=opts, law_curves=law_rest)
    _fit_all(rest, opts, sub)
    sl = slices[held]
    C, L, N, D = curves.C[sl], curves.L[sl], curves.N[sl], curves.D[sl]
    out = {"status": "ok", "held_out": curves.names[held], "held_out_runs": dropped,
           "N": float(N[-1]),
           "C_max": float(C[-1]), "C_max_fitted": float(rest.C.max()),
           "L_final": float(L[-1])}
    if sub.parametric is not None:
        pred = float(sub.parametric.predict(N[-1], D[-1]))
        out["parametric_L_final"] = pred
        out["parametric_L_rel_error"] = pred / float(L[-1]) - 1
    alloc = sub.frontier or sub.parametric
    if sub.loss_prediction is not None:
        lp = sub.loss_prediction
        out["loss_prediction_L_final"] = float(lp.predict(C[-1]))
        out["loss_prediction_L_rel_error"] = float(lp.predict(C[-1]) / L[-1] - 1)
        j = int(np.argmin(np.abs(np.log(L) - np.log(lp.predict(C)))))
        closest = {"C": float(C[j]), "L": float(L[j]), "L_pred": float(lp.predict(C[j])),
                   "N": float(N[j]), "D": float(D[j])}
        if alloc is not None:
            n_opt, d_opt = alloc.optimal(C[j])
            closest.update(source="frontier" if sub.frontier is not None else "parametric",
                           N_opt=float(n_opt), D_opt=float(d_opt),
                           N_ratio=float(N[j] / n_opt), D_ratio=float(D[j] / d_opt))
        out["closest_point"] = closest
    if alloc is None and sub.loss_prediction is None:
        raise FitError("extrapolation check: no law could be fitted without the held-out run")
    out["skipped"] = dict(sub.skipped)
    return out
