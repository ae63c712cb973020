"""Bootstrap refits of the Huber parametric fit, all at once.

Each bootstrap sample is the full data with integer weights (how often each point was drawn), so
all refits share one set of arrays and run together: a damped Gauss-Newton (IRLS) iteration on the
sum of weighted Huber losses, vectorised over samples, warm-started from the full-data optimum and
from the other distinct optima the main fit's grid starts reached (so that a second optimum is not
missed): each sample keeps its lowest objective among the starts that converged. Samples no start
converges on are refitted one by one with L-BFGS, then from the grid when L-BFGS does not converge
(one that converges to exponents outside the power-law family counts as failed: searching 16 more
starts per sample took minutes on the flat curves of a size-insensitive task and rarely changed the
verdict); the fallback is counted, never hidden. Every refit then faces the main fit's acceptance
checks (exponents in (0, 10), A and B neither 0 nor infinite, R^2 of log loss at least 0.5 on its
sample). Refitting stops as soon as more than half the samples have failed, since the interval is
refused then whatever the rest give.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from scaling.laws._threads import single_threaded_blas
from scaling.laws.data import Curves, FitError, NotAPowerLawError, size_key
from scaling.laws.objectives import HUBER_DELTA
from scaling.laws.parametric import (
    _MAX_EXPONENT,
    _MIN_R2,
    MIN_PARAMETRIC_SIZES,
    ParametricFit,
    fit_huber,
    huber_theta,
)
from scaling.laws.uncertainty import (
    Bootstrap,
    check_bootstrap_args,
    effective_scheme,
    resample,
    sample_curves,
    too_many_failed,
)

logger = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1_000_000  # samples x points per batch, bounds memory at ~100 MB
_SCREEN = 2.0  # refit from another optimum where its objective is within this factor of the best


def _terms(th, xc, yc, logl):
    """Log residuals and softmax weights of the LSE model for every sample, (S, P) each."""
    t1 = th[:, 0:1] - th[:, 3:4] * xc
    t2 = th[:, 1:2] - th[:, 4:5] * yc
    t3 = np.broadcast_to(th[:, 2:3], t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)
    p1, p2, p3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = p1 + p2 + p3
    r = m + np.log(s) - logl
    return r, p1 / s, p2 / s, p3 / s


def _huber(r, w, delta):
    ar = np.abs(r)
    return (w * np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))).sum(axis=1)


def huber_refit_batch(x: np.ndarray, y: np.ndarray, logl: np.ndarray, weights: np.ndarray,
                      theta0: np.ndarray, *, delta: float = HUBER_DELTA, maxiter: int = 200
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise ``sum_p w[s,p] Huber(LSE(...) - log L_p)`` for every row ``s`` of ``weights``.

    Args:
        x: log N of the points, (P,).
        y: log D of the points, (P,).
        logl: log L of the points, (P,).
        weights: non-negative weight of each point in each sample, (S, P).
        theta0: start ``(a, b, e, alpha, beta)`` shared by all samples, (5,).
        delta: Huber threshold.
        maxiter: iteration cap.

    Returns:
        ``theta`` (S, 5), ``converged`` (S,) bool, ``objective`` (S,).
    """
    S = weights.shape[0]
    # Centre log N and log D: the same model, with a far better conditioned Gauss-Newton system.
    xm, ym = float(x.mean()), float(y.mean())
    xc, yc = x - xm, y - ym
    th = np.tile(np.asarray(theta0, dtype=np.float64), (S, 1))
    th[:, 0] -= th[:, 3] * xm
    th[:, 1] -= th[:, 4] * ym
    lam = np.full(S, 1e-3)
    active = np.ones(S, dtype=bool)
    r, q1, q2, q3 = _terms(th, xc, yc, logl)
    f = _huber(r, weights, delta)
    eye = np.eye(5)
    gscale = delta * weights.sum(axis=1)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        w, ri = weights[idx], r[idx]
        psi = np.clip(ri, -delta, delta)
        omega = w * np.where(np.abs(ri) <= delta, 1.0, delta / np.maximum(np.abs(ri), 1e-300))
        J = np.stack([q1[idx], q2[idx], q3[idx], -q1[idx] * xc, -q2[idx] * yc], axis=2)
        g = np.einsum("sp,spi->si", w * psi, J)
        small = np.max(np.abs(g), axis=1) <= 1e-6 * gscale[idx]
        active[idx[small]] = False
        if small.all():
            break
        keep = ~small
        idx, w, omega, J, g = idx[keep], w[keep], omega[keep], J[keep], g[keep]
        H = np.einsum("sp,spi,spj->sij", omega, J, J)
        diag = np.maximum(np.einsum("sii->si", H), 1e-12)
        A = H + lam[idx, None, None] * diag[:, :, None] * eye
        try:
            step = -np.linalg.solve(A, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -g / diag  # a singular system: fall back to a scaled gradient step
        trial = th[idx] + step
        rt, t1, t2, t3 = _terms(trial, xc, yc, logl)
        ft = _huber(rt, w, delta)
        better = np.isfinite(ft) & (ft <= f[idx])
        flat = better & (f[idx] - ft <= 1e-14 * f[idx])
        acc = idx[better]
        th[acc], f[acc] = trial[better], ft[better]
        r[acc], q1[acc], q2[acc], q3[acc] = rt[better], t1[better], t2[better], t3[better]
        lam[acc] *= 0.3
        lam[idx[~better]] *= 10.0
        tiny = np.max(np.abs(step), axis=1) < 1e-10
        active[idx[(better & (tiny | flat)) | (lam[idx] > 1e10)]] = False
    # Converged when the gradient is negligible on the objective's scale (as for L-BFGS).
    psi = np.clip(r, -delta, delta) * weights
    g = np.stack([(psi * q1).sum(1), (psi * q2).sum(1), (psi * q3).sum(1),
                  -(psi * q1 * xc).sum(1), -(psi * q2 * yc).sum(1)], axis=1)
    converged = np.all(np.isfinite(th), axis=1) & (np.max(np.abs(g), axis=1) <= 1e-6 * gscale)
    th[:, 0] += th[:, 3] * xm
    th[:, 1] += th[:, 4] * ym
    return th, converged, f


def _coefficients(th: np.ndarray) -> dict[str, np.ndarray]:
    a_, b_, e, al, be = th.T
    a, b = be / (al + be), al / (al + be)
    logG = (np.log(al) + a_ - np.log(be) - b_) / (al + be)
    return {"E": np.exp(e), "A": np.exp(a_), "B": np.exp(b_), "alpha": al, "beta": be, "a": a,
            "b": b, "a0": np.exp(logG - a * math.log(6.0)),
            "b0": np.exp(-logG - b * math.log(6.0))}


def accepted(th: np.ndarray, weights: np.ndarray, x: np.ndarray, y: np.ndarray,
             logl: np.ndarray) -> np.ndarray:
    """The main fit's acceptance checks on each row of ``th`` with its sample's point weights.

    As :func:`scaling.laws.parametric.fit_huber`: finite, exponents in (0, 10), A and B neither
    0 nor infinite, and R^2 of log loss at least 0.5 on the (weighted) sample, (S,) bool.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        scales = np.exp(th[:, :2])
        ok = (np.all(np.isfinite(th), axis=1) & (th[:, 3] > 0) & (th[:, 4] > 0)
              & (th[:, 3] < _MAX_EXPONENT) & (th[:, 4] < _MAX_EXPONENT)
              & np.all(np.isfinite(scales) & (scales > 0), axis=1))
        r, *_ = _terms(th, x, y, logl)
        wsum = weights.sum(axis=1)
        mean = (weights * logl).sum(axis=1) / wsum
        tot = (weights * (logl - mean[:, None]) ** 2).sum(axis=1)
        r2 = 1.0 - (weights * r * r).sum(axis=1) / tot
    return ok & (r2 >= _MIN_R2)


def _best_of_starts(x, y, logl, W, starts, delta):
    """Batched refits from the first start, then from each other start where it is competitive.

    Each sample keeps its best converged refit.
    Another start is refitted only for the samples whose objective at that start is within
    ``_SCREEN`` times their best converged objective (or that have none yet): as the main fit
    screens grid starts by objective, so a clearly worse basin costs nothing.
    """
    best_th, conv, f = huber_refit_batch(x, y, logl, W, starts[0], delta=delta)
    best_f = np.where(conv, f, np.inf)
    xc, yc = x - x.mean(), y - y.mean()
    for theta0 in starts[1:]:
        t = np.asarray(theta0, dtype=np.float64).copy()
        t[0] -= t[3] * x.mean()
        t[1] -= t[4] * y.mean()
        r, *_ = _terms(t[None, :], xc, yc, logl)
        f0 = _huber(np.broadcast_to(r, W.shape), W, delta)
        idx = np.flatnonzero(f0 <= _SCREEN * best_f)
        if idx.size == 0:
            continue
        th, ok, f = huber_refit_batch(x, y, logl, W[idx], theta0, delta=delta)
        better = ok & (f < best_f[idx])
        best_th[idx[better]], best_f[idx[better]] = th[better], f[better]
    return best_th, np.isfinite(best_f)


def bootstrap_huber(curves: Curves, fit: ParametricFit, *, num: int = 1000, seed: int = 0,
                    level: float = 0.95, delta: float = HUBER_DELTA, num_starts: int = 16,
                    scheme: str = "runs", num_warm_starts: int = 3,
                    progress: Callable[[int], None] | None = None) -> Bootstrap:
    """Bootstrap intervals of a Huber parametric fit with batched refits.

    Draws the same resamples as :func:`scaling.laws.uncertainty.bootstrap` with the same seed
    and scheme.

    Args:
        curves: the points.
        fit: the Huber fit on all of them.
        num: refits.
        seed: seed of the resampling.
        level: confidence level.
        delta: Huber threshold.
        num_starts: grid starts of a one-by-one refit from the grid.
        scheme: ``"runs"`` (default), ``"within-run"`` or ``"points"``.
        num_warm_starts: starts of every refit: the full-data optimum and up to
            ``num_warm_starts - 1`` other distinct optima of the main fit (``fit.optima``).
        progress: called with the number of refits done after each batch.

    Raises:
        ValueError: on a bad ``num``, ``level`` or ``scheme``; :class:`FitError` when over half
            the refits fail.
    """
    check_bootstrap_args(num, level)
    used = effective_scheme(curves, scheme)
    rng = np.random.default_rng(seed)
    P = curves.num_points
    draws = [resample(curves, rng, used) for _ in range(num)]
    x, y, logl = np.log(curves.N), np.log(curves.D), np.log(curves.L)
    # point -> size, one column per size: W @ sizes counts each sample's points of each size
    size_of = np.unique(size_key(curves.N), return_inverse=True)[1].ravel()
    sizes_onehot = np.eye(int(size_of.max()) + 1)[size_of]
    # Centred as in huber_refit_batch, for the acceptance checks.
    xc, yc = x - x.mean(), y - y.mean()
    theta0 = huber_theta(fit)
    starts = [theta0] + list(fit.optima[1:max(num_warm_starts, 1)])
    thetas, ok = np.empty((num, 5)), np.zeros(num, dtype=bool)
    chunk = max(1, _CHUNK_ELEMENTS // max(P, 1))
    fallback = failed = 0
    with single_threaded_blas():
        for lo in range(0, num, chunk):
            hi = min(num, lo + chunk)
            W = np.stack([np.bincount(d[0], minlength=P) for d in draws[lo:hi]]
                         ).astype(np.float64)
            th, conv = _best_of_starts(x, y, logl, W, starts, delta)
            for j in np.flatnonzero(~conv):  # one by one: L-BFGS, then the grid
                fallback += 1
                sample = sample_curves(curves, *draws[lo + j])
                try:
                    try:
                        refit = fit_huber(sample, delta=delta, init=th[j])
                    except NotAPowerLawError:
                        raise
                    except FitError:
                        refit = fit_huber(sample, delta=delta, num_starts=num_starts)
                    th[j], conv[j] = huber_theta(refit), True
                except FitError as e:
                    failed += 1
                    logger.debug("bootstrap refit failed: %s", e)
                    if failed > num // 2:
                        break
            centred = th.copy()
            centred[:, 0] -= th[:, 3] * x.mean()
            centred[:, 1] -= th[:, 4] * y.mean()
            # a refit faces the main fit's rules, its number of distinct sizes included
            sizes = ((W @ sizes_onehot) > 0).sum(axis=1)
            good = conv & accepted(centred, W, xc, yc, logl) & (sizes >= MIN_PARAMETRIC_SIZES)
            failed += int((conv & ~good).sum())
            thetas[lo:hi], ok[lo:hi] = th, good
            if progress is not None:
                progress(hi - lo)
            if failed > num // 2:
                break
    if fallback:
        logger.info("%d of %d batched bootstrap refits needed a one-by-one refit", fallback, num)
    if failed > num // 2:
        raise too_many_failed(failed, num, used, at_least=True)
    if failed:
        logger.warning("%d of %d bootstrap refits failed and were left out", failed, num)
    return Bootstrap(samples=_coefficients(thetas[ok]), num_requested=num, num_failed=failed,
                     level=level, seed=seed, scheme=used)
