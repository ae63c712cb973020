"""Parametric fit (Hoffmann et al. 2022, Method 3): L(N, D) = E + A/N^alpha + B/D^beta.

Two objectives:

* ``"huber"`` (Hoffmann; Besiroglu et al. 2024): fit ``log L`` as
  ``LSE(a - alpha log N, b - beta log D, e)`` with ``A = e^a, B = e^b, E = e^e``, minimising the
  *sum* of Huber losses (delta 1e-3) of the log residuals with L-BFGS from a grid of starts.
* ``"lsq"`` (the paper, Pearce et al. 2025): ordinary least squares on ``L`` itself with SciPy's
  ``curve_fit``.

From the fit, ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)`` and the compute-optimal
allocation (Hoffmann eq. 4) ``N_opt = G (C/6)^a``, ``D_opt = (C/6)^b / G`` with
``G = (alpha A / (beta B))^(1/(alpha+beta))``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from scaling.laws._threads import single_threaded_blas
from scaling.laws.data import Curves, FitError, NotAPowerLawError, size_key
from scaling.laws.objectives import (
    HUBER_DELTA,
    _huber_objective,
    _lsq_jac,
    _lsq_model,
    huber_starts,
    lsq_starts,
)

logger = logging.getLogger(__name__)

_MAX_EXPONENT = 10.0  # alpha or beta above this is not a power law we can trust
# A law that explains less than half the variance of log L has not captured how loss falls
# with N and D (real scaling curves give R^2 above 0.9): report it rather than return it.
_MIN_R2 = 0.5
MIN_PARAMETRIC_SIZES = 3
"""Distinct model sizes a parametric fit needs: with two, E, A and alpha trade off along a line
of equally good fits, so the data set neither E nor a."""


def check_sizes(curves: Curves) -> None:
    """``FitError`` unless ``curves`` hold :data:`MIN_PARAMETRIC_SIZES` distinct model sizes."""
    n = int(np.unique(size_key(curves.N)).size)
    if n < MIN_PARAMETRIC_SIZES:
        raise FitError(f"the parametric fit needs at least {MIN_PARAMETRIC_SIZES} distinct model "
                       f"sizes N, got {n}: with fewer, E, A and alpha of L = E + A/N^alpha + "
                       f"B/D^beta trade off along a line of equally good fits, so the data do "
                       f"not set a; add a model size, or use the frontier fit")


@dataclass(frozen=True)
class ParametricFit:
    """Fitted coefficients of ``L = E + A/N^alpha + B/D^beta``.

    Attributes:
        E: irreducible loss (nats).
        A: model-size coefficient.
        B: data coefficient.
        alpha: model-size exponent.
        beta: data exponent.
        loss: objective used, ``"huber"`` or ``"lsq"``.
        objective: final value of that objective.
        num_points: points fitted.
        r2: fraction of the variance of log L the law explains.
        optima: the distinct optima the starts reached, best first, in the fit's own parameters
            (``huber_theta`` or ``lsq_theta`` order), to warm-start bootstrap refits.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    loss: str
    objective: float
    num_points: int
    r2: float = math.nan
    optima: tuple = field(default=(), compare=False, repr=False)

    @property
    def a(self) -> float:
        """Exponent of ``N_opt ∝ C^a``: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of ``D_opt ∝ C^b``: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """Allocation constant ``(alpha A / (beta B))^(1/(alpha+beta))`` of Hoffmann eq. 4."""
        return math.exp((math.log(self.alpha * self.A) - math.log(self.beta * self.B))
                        / (self.alpha + self.beta))

    @property
    def a0(self) -> float:
        """Prefactor of ``N_opt = a0 C^a`` (``G 6^-a``)."""
        return self.G * 6.0 ** -self.a

    @property
    def b0(self) -> float:
        """Prefactor of ``D_opt = b0 C^b`` (``6^-b / G``)."""
        return 6.0 ** -self.b / self.G

    def predict(self, N, D) -> np.ndarray:
        """Predicted loss at model size ``N`` and data ``D``."""
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta

    def optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal ``(N_opt, D_opt)`` at compute ``C`` (FLOPs)."""
        C = np.asarray(C, dtype=np.float64)
        return self.a0 * C ** self.a, self.b0 * C ** self.b

    def coefficients(self) -> dict[str, float]:
        """Every coefficient by name (the ones bootstrapped and written to ``fit.json``)."""
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
                "a": self.a, "b": self.b, "a0": self.a0, "b0": self.b0}


def _lbfgs(theta0, x, y, logl, delta, maxiter):
    res = optimize.minimize(_huber_objective, theta0, args=(x, y, logl, delta), jac=True,
                            method="L-BFGS-B",
                            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-12})
    # L-BFGS-B often stops on a line-search failure once it is within float precision of
    # the optimum; accept that when the gradient is negligible on the objective's scale.
    gscale = delta * x.size
    converged = bool(res.success) or float(np.max(np.abs(res.jac))) <= 1e-6 * gscale
    return res.x, float(res.fun), converged


def _check_exponents(alpha: float, beta: float, params: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(params)):
        raise FitError(f"{what} did not converge (non-finite coefficients {params.tolist()}); "
                       f"the curves may be too short or too noisy: add more model sizes or longer "
                       f"runs, or try the other --parametric-loss")
    if not (0.0 < alpha < _MAX_EXPONENT and 0.0 < beta < _MAX_EXPONENT):
        raise NotAPowerLawError(
            f"{what} gave exponents alpha={alpha:.4g}, beta={beta:.4g} outside "
            f"(0, {_MAX_EXPONENT:g}): the data does not pin down both power laws (e.g. one "
            f"model size dominates or the curves are flat); add model sizes spanning a wider "
            f"range or train longer")


def _validated(fit: ParametricFit, curves: Curves, what: str | None = None) -> ParametricFit:
    """``fit`` with its R^2 on log loss, or ``FitError`` when it is degenerate or fits badly.

    ``what`` names the fit in the messages (default ``"<loss> parametric fit"``).
    """
    what = what or f"{fit.loss} parametric fit"
    for name, value, var in (("A", fit.A, "N"), ("B", fit.B, "D")):
        # A term that underflowed to 0 leaves the allocation N_opt, D_opt undefined.
        if not (value > 0.0 and math.isfinite(value)):
            raise NotAPowerLawError(
                f"{what} gave {name} = {value:g}, so its law does not depend on {var} and "
                f"gives no compute-optimal allocation; if other fits find a power law, this "
                f"optimiser failed, else add model sizes spanning a wider range or train "
                f"longer")
    logl = np.log(curves.L)
    with np.errstate(all="ignore"):
        res = np.log(fit.predict(curves.N, curves.D)) - logl
    tot = float(np.sum((logl - logl.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / tot if tot > 0 else math.nan
    if not r2 >= _MIN_R2:
        raise FitError(f"{what} explains only R^2 = {r2:.2f} of the variance "
                       f"of log loss: the curves do not follow L = E + A/N^alpha + B/D^beta "
                       f"(does loss fall with N and D?); check the inputs and --loss-key")
    return ParametricFit(**{**fit.__dict__, "r2": r2})


def fit_huber(curves: Curves, *, delta: float = HUBER_DELTA, num_starts: int | None = 16,
              init: np.ndarray | None = None, maxiter: int = 2000) -> ParametricFit:
    """Fit ``log L = LSE(a - alpha log N, b - beta log D, e)`` minimising summed Huber losses.

    Args:
        curves: the points.
        delta: Huber threshold on log residuals (Hoffmann: 1e-3).
        num_starts: run L-BFGS from this many of the best points of Hoffmann's 4,500-point grid
            (ranked by the objective, evaluated on the whole grid at once); ``None`` runs it from
            every grid point, as Hoffmann and Besiroglu et al. did.
        init: instead of the grid, start from these ``(a, b, e, alpha, beta)`` rows (e.g. a
            previous optimum, to warm-start bootstrap refits), (S, 5).
        maxiter: L-BFGS iteration cap per start.

    Raises:
        FitError: when the curves hold fewer than :data:`MIN_PARAMETRIC_SIZES` model sizes, no
            start converges, or the optimum is not a power law.
    """
    check_sizes(curves)
    x, y, logl = np.log(curves.N), np.log(curves.D), np.log(curves.L)
    if init is not None:
        starts = np.atleast_2d(np.asarray(init, dtype=np.float64))
    else:
        starts = huber_starts(curves, num_starts, delta=delta)
    found = []
    with single_threaded_blas():
        for theta0 in starts:
            theta, f, ok = _lbfgs(theta0, x, y, logl, delta, maxiter)
            if ok and np.all(np.isfinite(theta)):
                found.append((theta, f))
    best = min(found, key=lambda t: t[1]) if found else None
    if best is None:
        raise FitError(f"Huber parametric fit did not converge from any of {len(starts)} starts "
                       f"(L-BFGS, at most {maxiter} iterations each); try --parametric-loss lsq, "
                       f"more model sizes, or longer curves")
    theta, f = best
    a, b, e, alpha, beta = (float(v) for v in theta)
    what = f"Huber parametric fit (best of {len(starts)} starts)"
    _check_exponents(alpha, beta, theta, what)
    with np.errstate(over="ignore"):  # an overflow to inf is refused by _validated
        E, A, B = (float(np.exp(v)) for v in (e, a, b))
    return _validated(ParametricFit(E=E, A=A, B=B, alpha=alpha, beta=beta, loss="huber",
                                     objective=f, num_points=curves.num_points,
                                     optima=_distinct(found)), curves, what)


def _distinct(found: list[tuple[np.ndarray, float]], most: int = 4) -> tuple:
    """Up to ``most`` optima of ``found`` that differ in objective or parameters, best first."""
    out: list[tuple[np.ndarray, float]] = []
    for theta, f in sorted(found, key=lambda t: t[1]):
        if all(abs(f - g) > 1e-9 * max(abs(g), 1e-300) and
               np.max(np.abs(theta - t)) > 1e-3 for t, g in out):
            out.append((theta, f))
        if len(out) == most:
            break
    return tuple(t for t, _ in out)


def _log_clamped(v: float) -> float:
    """log(v) with v clamped to the smallest positive float.

    A fit can underflow E, A or B to 0.0 through exp() (A does when the loss does not depend on
    N), and a warm start from it needs a finite log.
    """
    return math.log(max(v, np.finfo(np.float64).tiny))


def huber_theta(fit: ParametricFit) -> np.ndarray:
    """The ``(a, b, e, alpha, beta)`` vector of a fit, to warm-start another Huber fit."""
    a, b, e = (_log_clamped(v) for v in (fit.A, fit.B, fit.E))
    return np.array([a, b, e, fit.alpha, fit.beta])


def fit_lsq(curves: Curves, *, init: np.ndarray | None = None, num_starts: int | None = 16,
            maxfev: int = 5000) -> ParametricFit:
    """Fit ``L = E + A/N^alpha + B/D^beta`` by least squares on ``L`` with ``curve_fit``.

    The paper's fit. It does not say how it started or bounded ``curve_fit``; as for the Huber
    fit, we run it from the ``num_starts`` points of Hoffmann's grid with the smallest squared
    error and keep the best optimum, fit ``A`` and ``B`` through their logarithms (the same
    least-squares problem, better conditioned) and bound ``E >= 0`` and ``0 <= alpha, beta <=
    10``. The best optimum then faces the same checks as the Huber fit.

    Args:
        curves: the points.
        init: start(s) ``(E, log A, log B, alpha, beta)`` instead of the grid (warm starts),
            (5,) or (S, 5).
        num_starts: grid starts (``None``: every grid point with a finite error).
        maxfev: cap on function evaluations per start.

    Raises:
        FitError: when the curves hold fewer than :data:`MIN_PARAMETRIC_SIZES` model sizes, no
            start converges (the message says how many were tried and the last error), or the
            best optimum is not a power law.
    """
    check_sizes(curves)
    x, y, L = np.log(curves.N), np.log(curves.D), curves.L
    if init is None:
        starts = lsq_starts(curves, num_starts)
    else:
        starts = np.atleast_2d(np.asarray(init, dtype=np.float64))
    # log A and log B stay below 700 so that A and B are finite floats.
    lower = np.array([0.0, -np.inf, -np.inf, 0.0, 0.0])
    upper = np.array([np.inf, 700.0, 700.0, _MAX_EXPONENT, _MAX_EXPONENT])
    found, last_error = [], "no start had a finite squared error"
    with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
        for p0 in starts:
            p0 = np.clip(p0, lower + 1e-9, upper - 1e-9)
            try:
                popt, _ = optimize.curve_fit(_lsq_model, (x, y), L, p0=p0, jac=_lsq_jac,
                                             bounds=(lower, upper), maxfev=maxfev,
                                             x_scale="jac")
            except (RuntimeError, optimize.OptimizeWarning, ValueError) as e:
                last_error = str(e)
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                sse = float(np.sum((_lsq_model((x, y), *popt) - L) ** 2))
            if np.isfinite(sse):
                found.append((popt, sse))
    best = min(found, key=lambda t: t[1]) if found else None
    if best is None:
        raise FitError(f"least-squares parametric fit (curve_fit) did not converge from any of "
                       f"{len(starts)} starts (last error: {last_error}); try --parametric-loss "
                       f"huber, more model sizes, or longer curves")
    popt, sse = best
    E, a, b, alpha, beta = (float(v) for v in popt)
    what = f"least-squares parametric fit (best of {len(starts)} starts)"
    _check_exponents(alpha, beta, popt, what)
    return _validated(ParametricFit(E=E, A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta,
                                     loss="lsq", objective=sse, num_points=curves.num_points,
                                     optima=_distinct(found)), curves, what)


def lsq_theta(fit: ParametricFit) -> np.ndarray:
    """The ``(E, log A, log B, alpha, beta)`` vector of a fit, to warm-start :func:`fit_lsq`."""
    return np.array([fit.E, _log_clamped(fit.A), _log_clamped(fit.B), fit.alpha, fit.beta])


def fit_parametric(curves: Curves, loss: str = "huber", **kwargs) -> ParametricFit:
    """Fit the parametric law with ``loss`` = ``"huber"`` (Hoffmann/Epoch) or ``"lsq"`` (paper)."""
    if loss == "huber":
        return fit_huber(curves, **kwargs)
    if loss == "lsq":
        return fit_lsq(curves, **kwargs)
    raise ValueError(f"parametric loss must be 'huber' or 'lsq', got {loss!r}")
