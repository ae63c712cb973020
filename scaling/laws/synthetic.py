"""Synthetic training curves from a known parametric law, for known-answer tests and benchmarks."""

from __future__ import annotations

import numpy as np

from scaling.laws.data import Curves, make_curves

# Besiroglu et al. (2024)'s estimates of Chinchilla's law, so a = beta/(alpha+beta) = 0.513.
EPOCH_LAW = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}


def optimal_compute(N, E: float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    """Compute C at which model size ``N`` is compute-optimal under the law (Hoffmann eq. 4)."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return 6.0 * (np.asarray(N, dtype=np.float64) / G) ** ((alpha + beta) / beta)


def synthetic_curves(sizes=None, *, law: dict | None = None, points_per_curve: int = 25,
                     span: tuple[float, float] = (1 / 30, 10.0), spans=None,
                     noise: float = 0.0, seed: int | list[int] = 0) -> Curves:
    """Training curves ``L = E + A/N^alpha + B/D^beta`` for a ladder of model sizes.

    Each model is logged at ``points_per_curve`` log-spaced compute values from ``span[0]`` to
    ``span[1]`` times its compute-optimal budget, so curves are trained past their optimum and
    neighbouring sizes overlap, as in a frontier study.

    Args:
        sizes: model sizes N; default ten sizes from 5e6 to 1e9 (log-spaced).
        law: ``E, A, B, alpha, beta``; default :data:`EPOCH_LAW`.
        points_per_curve: logged points per model.
        span: compute range of each curve, in multiples of its compute-optimal budget.
        spans: one ``(low, high)`` range per size instead of ``span`` (e.g. to truncate the
            smallest and largest runs, as real studies do).
        noise: standard deviation of multiplicative log-normal noise on L (0.01 is 1%).
        seed: seed of the noise.
    """
    law = dict(EPOCH_LAW if law is None else law)
    sizes = np.geomspace(5e6, 1e9, 10) if sizes is None else np.asarray(sizes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    N, D = [], []
    spans = [span] * sizes.size if spans is None else list(spans)
    if len(spans) != sizes.size:
        raise ValueError(f"spans has {len(spans)} ranges for {sizes.size} sizes; give one per size")
    for n, (lo, hi) in zip(sizes, spans, strict=True):
        c_opt = optimal_compute(n, **law)
        C = np.geomspace(lo * c_opt, hi * c_opt, points_per_curve)
        N.append(np.full(points_per_curve, n))
        D.append(C / (6.0 * n))
    N, D = np.concatenate(N), np.concatenate(D)
    L = law["E"] + law["A"] * N ** -law["alpha"] + law["B"] * D ** -law["beta"]
    if noise:
        L = L * np.exp(noise * rng.standard_normal(L.shape))
    return make_curves(N, D, L)


def truncated_ladder(k: int, seed: int, *, noise: float = 0.01, points: int = 100,
                     seeds: int = 1) -> Curves:
    """``k`` sizes three times apart whose first and last runs are cut short, as in real studies.

    Every run spans 1/30 to 10 times its compute-optimal budget, except the smallest, which
    starts late (from 1/3 of it, to 3 times), and the largest, which stops at its optimum; so
    the compute ranges where the first and last optimal sizes win are cut short by the data's
    ends. ``noise`` is the standard deviation of the multiplicative noise on each point.
    ``seeds`` runs of every size (curves named ``N=<size>/seed<i>``) draw their noise
    independently, as training seeds do.
    """
    spans = [(1 / 30, 10.0)] * k
    spans[0], spans[-1] = (1 / 3, 3.0), (1 / 30, 1.0)
    sizes = np.geomspace(2e7, 2e7 * 3.0 ** (k - 1), k)
    runs = [synthetic_curves(sizes, spans=spans, noise=noise, points_per_curve=points,
                             seed=seed if seeds == 1 else [seed, i]) for i in range(seeds)]
    if seeds == 1:
        return runs[0]
    names = [f"N={n:.3g}/seed{i}" for i, c in enumerate(runs) for n in c.N]
    return make_curves(*(np.concatenate([getattr(c, x) for c in runs]) for x in "NDL"), names)


def a_error_bound(curves: Curves, noise: float, law: dict | None = None) -> float:
    """Cramér-Rao bound on the standard deviation of any unbiased estimate of a from ``curves``.

    With multiplicative log-normal noise of standard deviation ``noise`` on every point (as
    :func:`synthetic_curves` draws it), ``log L`` carries Gaussian noise and the Fisher information
    of the law's five parameters ``(E, A, B, alpha, beta)`` is ``J^T J / noise^2``, with ``J`` the
    Jacobian of ``log L`` at the true law over the curves' ``(N, D)``. The bound on
    ``a = beta / (alpha + beta)`` follows by the delta method. It depends only on where the
    points lie (their noise is ignored), so it says how precisely a ladder *can* pin a down:
    no unbiased estimator, parametric or frontier, has a smaller standard deviation.

    Args:
        curves: the points (``N`` and ``D`` are used).
        noise: standard deviation of the noise on ``log L`` (0.01 is 1%).
        law: ``E, A, B, alpha, beta``; default :data:`EPOCH_LAW`.

    >>> c = truncated_ladder(6, 0, noise=0.0)
    >>> round(a_error_bound(c, 0.01) / a_error_bound(c, 0.001), 6)  # linear in the noise
    10.0
    """
    if noise <= 0:
        raise ValueError(f"noise must be positive, got {noise}")
    law = dict(EPOCH_LAW if law is None else law)
    E, A, B, alpha, beta = (law[k] for k in ("E", "A", "B", "alpha", "beta"))
    N, D = np.asarray(curves.N, np.float64), np.asarray(curves.D, np.float64)
    n_term, d_term = A * N ** -alpha, B * D ** -beta
    L = E + n_term + d_term
    # d log L / d (E, A, B, alpha, beta)
    J = np.stack([1.0 / L, n_term / A / L, d_term / B / L,
                  -n_term * np.log(N) / L, -d_term * np.log(D) / L], axis=1)
    cov = np.linalg.inv(J.T @ J) * noise ** 2
    grad = np.array([0.0, 0.0, 0.0, -beta, alpha]) / (alpha + beta) ** 2
    return float(np.sqrt(grad @ cov @ grad))
