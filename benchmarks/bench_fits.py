"""Speed of the Huber parametric fit with whole-run bootstrap intervals, beside matched baselines.

Target: a Huber fit with a grid of starts on 250 points plus 1,000 whole-run bootstrap refits in
under 60 s on 2 CPU cores.

Baselines, timed in the same process, interleaved with ours (the machine is noisy):

* **algorithm-matched** (the main one): the same algorithm written the plain way with SciPy: the
  Huber objective on all 4,500 points of Hoffmann's grid, L-BFGS-B (analytic gradient, the same
  tolerances) from the 16 best, then one L-BFGS-B refit per whole-run resample, started from the
  full-data optimum. It differs from ours only in refitting samples one at a time instead of in
  one batched Gauss-Newton iteration. Its refits are timed on ``--baseline-refits`` samples and
  scaled to ``--bootstrap``.
* **chinchilla** (kyo-takano's package, ``pip install embodied-scaling[bench]``), when installed:
  its ``Chinchilla.fit`` (BFGS in 128-bit floats from every start of the grid it is given) with
  Hoffmann's log-Huber loss (delta 1e-3), timed on a 32-start sub-grid and scaled to the 4,500
  starts, and its refits (one start, our optimum) timed on a few samples and scaled. It has no
  bootstrap of its own.

    .venv/bin/python benchmarks/bench_fits.py [--bootstrap 1000] [--baseline-refits 100]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import tempfile
import time

import numpy as np
from scipy import optimize

from scaling.laws._threads import single_threaded_blas
from scaling.laws.batched import bootstrap_huber
from scaling.laws.objectives import HUBER_DELTA, _huber_objective, grid_shift, huber_grid
from scaling.laws.parametric import fit_huber
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves
from scaling.laws.uncertainty import resample_runs


def matched_fit(curves, x, y, logl, num_starts=16):
    """Screen Hoffmann's grid by objective, then scipy L-BFGS-B from the best starts."""
    grid = huber_grid(grid_shift(curves))  # laid out as the fit lays it out
    obj = np.array([_huber_objective(g, x, y, logl, HUBER_DELTA)[0] for g in grid])
    best = None
    for s in grid[np.argsort(obj, kind="stable")[:num_starts]]:
        res = optimize.minimize(_huber_objective, s, args=(x, y, logl, HUBER_DELTA), jac=True,
                                method="L-BFGS-B", options={"maxiter": 2000, "ftol": 1e-15,
                                                            "gtol": 1e-12})
        if best is None or res.fun < best.fun:
            best = res
    return best


def matched_refits(curves, x, y, logl, theta, num, seed):
    """One scipy L-BFGS-B refit per whole-run resample, started from ``theta``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        idx, _ = resample_runs(curves, rng)
        res = optimize.minimize(_huber_objective, theta, args=(x[idx], y[idx], logl[idx],
                                                               HUBER_DELTA),
                                jac=True, method="L-BFGS-B",
                                options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
        out.append(res.x[4] / (res.x[3] + res.x[4]))
    return np.array(out)


def chinchilla_times(curves, theta, refits: int):
    """(seconds per grid start of Chinchilla.fit, seconds per one-start refit, a), or None."""
    try:
        from chinchilla import Chinchilla
        from chinchilla._metrics import log_huber
    except ImportError:
        return None
    logging.getLogger("chinchilla").setLevel(logging.ERROR)
    loss = functools.partial(log_huber, delta=HUBER_DELTA)
    sub = {"e": (-1.0, 1.0), "a": (0.0, 10.0), "b": (5.0, 10.0), "alpha": (0.0, 0.5),
           "beta": (0.0, 0.5)}
    one = {"e": (theta[2],), "a": (theta[0],), "b": (theta[1],), "alpha": (theta[3],),
           "beta": (theta[4],)}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        def model(grid, index):
            cc = Chinchilla(tmp + f"/p{time.perf_counter_ns()}", param_grid=grid, loss_fn=loss,
                            model_search_config={"hyperparam_grid": {"n": [1]},
                                                 "size_estimator": lambda n: n,
                                                 "flop_estimator": lambda n: n},
                            log_level=50)
            for n, d, l_ in zip(curves.N[index], curves.D[index], curves.L[index], strict=True):
                cc.database.append(C=6 * n * d, N=n, D=d, loss=l_)
            return cc

        cc = model(sub, np.arange(curves.num_points))
        t0 = time.perf_counter()
        cc.fit(parallel=False)
        per_start = (time.perf_counter() - t0) / 32
        a = float(cc.beta / (cc.alpha + cc.beta))
        t0 = time.perf_counter()
        for _ in range(refits):
            model(one, resample_runs(curves, rng)[0]).fit(parallel=False)
        per_refit = (time.perf_counter() - t0) / refits
    return per_start, per_refit, a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--baseline-refits", type=int, default=100,
                    help="bootstrap refits timed for the baselines (scaled to --bootstrap)")
    ap.add_argument("--chinchilla-refits", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; medians reported")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    curves = synthetic_curves(noise=0.01, seed=args.seed)
    x, y, logl = np.log(curves.N), np.log(curves.D), np.log(curves.L)
    truth = EPOCH_LAW["beta"] / (EPOCH_LAW["alpha"] + EPOCH_LAW["beta"])
    print(f"{curves.num_points} points on {curves.num_curves} curves, 1% noise, true a = "
          f"{truth:.4f}; {args.bootstrap} whole-run bootstrap refits; {args.rounds} interleaved "
          f"rounds, medians")
    ours, base, peer = [], [], []
    with single_threaded_blas():
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            fit = fit_huber(curves)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            boot = bootstrap_huber(curves, fit, num=args.bootstrap, seed=args.seed)
            ours.append((t_fit, time.perf_counter() - t0))

            t0 = time.perf_counter()
            best = matched_fit(curves, x, y, logl)
            t_mfit = time.perf_counter() - t0
            t0 = time.perf_counter()
            a_m = matched_refits(curves, x, y, logl, best.x, args.baseline_refits, args.seed)
            t_mboot = (time.perf_counter() - t0) * args.bootstrap / args.baseline_refits
            base.append((t_mfit, t_mboot))

            c = chinchilla_times(curves, best.x, args.chinchilla_refits)
            if c is not None:
                peer.append(c)
    t_fit, t_boot = np.median(ours, axis=0)
    total = t_fit + t_boot
    ci = boot.ci()["a"]
    print(f"ours:     fit {t_fit:6.2f} s (grid screened, L-BFGS from the 16 best) + "
          f"{args.bootstrap} batched refits {t_boot:6.2f} s = {total:6.2f} s; a = {fit.a:.4f} "
          f"[{ci[0]:.4f}, {ci[1]:.4f}] ({boot.scheme}), {boot.num_failed} failed")
    m_fit, m_boot = np.median(base, axis=0)
    m_total = m_fit + m_boot
    lo, hi = np.percentile(a_m, [2.5, 97.5])
    print(f"baseline (algorithm-matched, scipy L-BFGS-B, one refit per sample): fit "
          f"{m_fit:6.2f} s + {args.bootstrap} refits {m_boot:6.2f} s (timed on "
          f"{args.baseline_refits}) = {m_total:6.2f} s, {m_total / total:.1f}x ours; a = "
          f"{best.x[4] / (best.x[3] + best.x[4]):.4f}, objective {best.fun:.6g} "
          f"(ours {fit.objective:.6g}); its {args.baseline_refits}-refit interval "
          f"[{lo:.4f}, {hi:.4f}]")
    if peer:
        per_start, per_refit, a_c = np.median(peer, axis=0)
        c_fit = per_start * huber_grid().shape[0]
        c_total = c_fit + per_refit * args.bootstrap
        print(f"chinchilla package: fit from all 4,500 grid starts {c_fit:7.1f} s (timed on 32) "
              f"+ {args.bootstrap} one-start refits {per_refit * args.bootstrap:7.1f} s (timed "
              f"on {args.chinchilla_refits}) = {c_total:7.1f} s, {c_total / total:.0f}x ours; "
              f"a = {a_c:.4f} on its 32-start sub-grid")
    else:
        print("chinchilla package: not installed (pip install embodied-scaling[bench])")
    print(f"target < 60 s for ours: {'met' if total < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
