"""Speed of the Huber parametric fit with bootstrap intervals, beside a plain scipy loop.

Target: a Huber fit with a grid of starts on 250 points plus 1,000 bootstrap refits in under
60 s on 2 CPU cores. The baseline is what one would write first: ``scipy.optimize.minimize``
(L-BFGS-B, numerical gradients) from each start of Hoffmann's grid for the fit, and a plain
per-sample loop for the bootstrap; both are timed on a subset and scaled, once as is and once
with OpenBLAS limited to one thread (on a busy machine BLAS threads slow small fits tenfold).

    .venv/bin/python benchmarks/bench_fits.py [--bootstrap 1000] [--baseline-refits 20]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
from scipy import optimize

from scaling.laws._threads import single_threaded_blas
from scaling.laws.batched import bootstrap_huber
from scaling.laws.parametric import HUBER_DELTA, fit_huber, huber_grid
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves
from scaling.laws.uncertainty import resample_within_curves


def plain_objective(theta, x, y, logl):
    a, b, e, al, be = theta
    lse = np.logaddexp(np.logaddexp(a - al * x, b - be * y), e)
    r = lse - logl
    ar = np.abs(r)
    return np.where(ar <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (ar - 0.5 * HUBER_DELTA)).sum()


def plain_fit(x, y, logl, starts):
    best = None
    for s in starts:
        res = optimize.minimize(plain_objective, s, args=(x, y, logl), method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--baseline-refits", type=int, default=20,
                    help="bootstrap refits timed for the baseline (scaled to --bootstrap)")
    ap.add_argument("--baseline-starts", type=int, default=50,
                    help="grid starts timed for the baseline fit (scaled to the full grid)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    curves = synthetic_curves(noise=0.01, seed=args.seed)
    x, y, logl = np.log(curves.N), np.log(curves.D), np.log(curves.L)
    truth = EPOCH_LAW["beta"] / (EPOCH_LAW["alpha"] + EPOCH_LAW["beta"])
    print(f"{curves.num_points} points on {curves.num_curves} curves, 1% noise, true a = "
          f"{truth:.4f}")

    t0 = time.perf_counter()
    fit = fit_huber(curves)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = bootstrap_huber(curves, fit, num=args.bootstrap, seed=args.seed)
    t_boot = time.perf_counter() - t0
    ours = t_fit + t_boot
    ci = boot.ci()["a"]
    print(f"ours:     fit {t_fit:6.2f} s (16 best of 4,500 grid starts, analytic gradient) + "
          f"{args.bootstrap} batched refits {t_boot:6.2f} s = {ours:6.2f} s; a = {fit.a:.4f} "
          f"[{ci[0]:.4f}, {ci[1]:.4f}], {boot.num_failed} failed")

    grid = huber_grid()
    n = min(args.baseline_starts, grid.shape[0])
    sub = grid[np.random.default_rng(args.seed).permutation(grid.shape[0])[:n]]
    for label, ctx in (("baseline", contextlib.nullcontext),
                       ("baseline, 1 BLAS thread", single_threaded_blas)):
        with ctx():
            t0 = time.perf_counter()
            best = plain_fit(x, y, logl, sub)
            t_plain_fit = (time.perf_counter() - t0) * grid.shape[0] / n
            rng = np.random.default_rng(args.seed)
            t0 = time.perf_counter()
            for _ in range(args.baseline_refits):
                idx = resample_within_curves(curves, rng)
                optimize.minimize(plain_objective, best.x, args=(x[idx], y[idx], logl[idx]),
                                  method="L-BFGS-B")
            t_plain_boot = (time.perf_counter() - t0) * args.bootstrap / args.baseline_refits
        plain = t_plain_fit + t_plain_boot
        a_plain = best.x[4] / (best.x[3] + best.x[4])
        print(f"{label}: fit {t_plain_fit:7.1f} s (all 4,500 starts, timed on {n}) + "
              f"{args.bootstrap} warm-started refits {t_plain_boot:6.1f} s (timed on "
              f"{args.baseline_refits}) = {plain:7.1f} s, {plain / ours:.0f}x ours; best of its "
              f"{n} starts: a = {a_plain:.4f}, objective {best.fun:.6g} "
              f"(ours {fit.objective:.6g})")
    print(f"target < 60 s for ours: {'met' if ours < 60 else 'NOT met'}")

if __name__ == "__main__":
    main()
