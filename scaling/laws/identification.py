"""Whether a fit's coefficients are set by the data.

The alternatives: the optimiser's bounds, too few sizes on the frontier, or the start of
training.
"""

from __future__ import annotations

from scaling.laws.frontier import LOSS_PREDICTION_BOUNDS, LossPrediction
from scaling.laws.parametric import _MAX_EXPONENT, ParametricFit

MIN_REFITS_FOR_WIDTH = 10
"""Accepted bootstrap refits below which an interval's zero width says nothing (a single refit
always gives one): the zero-width checks are skipped."""

MIN_FRONTIER_SIZES = 3
"""Sizes the frontier fit must find optimal (bracketed by a smaller and a larger size) for its
``a`` to count as identified: two sizes give a slope through two points."""


def falling_allocation(a: float, points: str = "the frontier points") -> str | None:
    """Why an allocation exponent ``a`` outside (0, 1) is no finding (None inside).

    It says the optimal size shrinks as compute grows, which no compute-optimal allocation
    does: the frontier's points (or the IsoFLOP budgets' optima, named by ``points``) then come
    from compute where the curves have not separated (the first updates of each run, where the
    leader changes as the runs leave their warmup) or from curves that never cross.

    At or above 1 it says the optimal data shrinks as compute grows (``b = 1 - a <= 0``).

    >>> falling_allocation(-0.2, "the IsoFLOP optima")[:60]
    'a = -0.2 <= 0 (the optimal size falls as compute grows: the '
    >>> falling_allocation(1.3)[:14]
    'a = 1.3 >= 1 ('
    """
    if a >= 1:
        return (f"a = {a:.3g} >= 1 (the optimal data D_opt = C / (6 N_opt) falls as compute "
                f"grows: {points} are no compute-optimal allocation, such as sizes whose curves "
                "cross where the larger has seen fewer inputs than the smaller)")
    if a > 0:
        return None
    return (f"a = {a:.3g} <= 0 (the optimal size falls as compute grows: {points} "
            "come from where the curves have not separated, such as the first updates of each "
            "run, not from a compute-optimal allocation)")


def zero_width_issues(values: dict[str, float], ci: dict[str, list[float]] | None
                      ) -> list[str]:
    """Coefficients of ``values`` whose bootstrap interval in ``ci`` has zero width.

    Every refit landed on the same value: a bound, or a resampling that never changes the data,
    set it, not the data.

    >>> zero_width_issues({"a": 0.5}, {"a": [0.5, 0.5]})
    ['a has a zero-width interval [0.5, 0.5]']
    """
    out = []
    for name, value in values.items():
        lo_hi = (ci or {}).get(name)
        if lo_hi and lo_hi[1] - lo_hi[0] <= 1e-9 * max(1.0, abs(value)):
            out.append(f"{name} has a zero-width interval [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]")
    return out


def frontier_issues(num_models: int, a: float, ci: dict[str, list[float]] | None = None
                    ) -> list[str]:
    """Why a frontier fit's ``a`` (``N_opt ∝ C^a``) is not identified (empty when it is).

    Fewer than :data:`MIN_FRONTIER_SIZES` sizes optimal somewhere bracketed give a slope
    through one or two points; an ``a`` outside (0, 1) is no allocation (see
    :func:`falling_allocation`).

    >>> frontier_issues(3, 0.5)
    []
    >>> frontier_issues(2, -0.3)[1][:36]
    'a = -0.3 <= 0 (the optimal size fall'
    """
    out = []
    if num_models < MIN_FRONTIER_SIZES:
        out.append(f"{num_models} size{'s' if num_models != 1 else ''} on the efficient "
                   f"frontier (at least {MIN_FRONTIER_SIZES} needed)")
    if (falling := falling_allocation(a)) is not None:
        out.append(falling)
    return out + zero_width_issues({"a": a}, ci)


def isoflop_issues(a: float, ci: dict[str, list[float]] | None = None) -> list[str]:
    """Why an IsoFLOP fit's ``a`` is not identified (empty when it is): an ``a`` outside (0, 1).

    (A minimum at one size at every budget is refused by the fit itself.)

    >>> isoflop_issues(0.5)
    []
    """
    falling = falling_allocation(a, "the IsoFLOP optima")
    return ([falling] if falling else []) + zero_width_issues({"a": a}, ci)


def frontier_sizes(entry: dict) -> int:
    """Sizes a ``fit.json`` frontier entry found optimal (``num_models``, else ``optimal_N``)."""
    return int(entry.get("num_models") or len(entry.get("optimal_N") or []))


def entry_issues(name: str, entry: dict) -> list[str]:
    """Why the ``fit.json`` entry of fit ``name`` is not identified (empty when it is).

    Its ``not_identified`` list; a frontier entry written before it carried that list is
    judged by :func:`frontier_issues`.

    >>> entry_issues("frontier", {"a": -0.07, "num_models": 3})[0][:13]
    'a = -0.07 <= '
    """
    if "not_identified" in entry:
        return list(entry["not_identified"] or [])
    if name == "frontier":
        return frontier_issues(frontier_sizes(entry), float(entry["a"]))
    return []


def bound_issues(fit: ParametricFit, ci: dict[str, list[float]] | None = None) -> list[str]:
    """Why a parametric fit's coefficients are not identified by the data (empty when they are).

    A coefficient at the edge of its range (E collapsed to 0, an exponent at 0 or at the cap of
    10) or with a bootstrap interval of zero width (every refit stuck at the same value) is set
    by the optimiser's bounds, not by the data; a result built on it is not a finding. So is an
    allocation exponent ``a`` outside its own bootstrap interval: the refits do not centre on
    the fit (they land on another optimum, or the full-data fit sits at a bound they leave), so
    neither the value nor the interval describes what the data say.

    >>> fit = ParametricFit(E=1.5, A=10.0, B=10.0, alpha=0.3, beta=0.3, loss="huber",
    ...                     objective=0.0, num_points=50)
    >>> bound_issues(fit, {"a": [0.4, 0.6]})
    []
    >>> bound_issues(fit, {"a": [0.6, 0.7]})[0][:47]
    'a = 0.5 lies outside its own bootstrap interval'
    """
    out = []
    if fit.E <= 1e-6:
        out.append(f"E = {fit.E:.3g} (the irreducible loss at its bound 0)")
    for name in ("alpha", "beta"):
        v = getattr(fit, name)
        if v <= 1e-3 or v >= 0.99 * _MAX_EXPONENT:
            out.append(f"{name} = {v:.3g} (at the edge of (0, {_MAX_EXPONENT:g}))")
    out += zero_width_issues({k: getattr(fit, k) for k in ("E", "alpha", "beta")}, ci)
    lo_hi = (ci or {}).get("a")
    if lo_hi and not lo_hi[0] - 1e-9 <= fit.a <= lo_hi[1] + 1e-9:
        out.append(f"a = {fit.a:.3g} lies outside its own bootstrap interval [{lo_hi[0]:.3g}, "
                   f"{lo_hi[1]:.3g}] (the refits do not centre on the fit)")
    return out


def bound_caveats(fit: ParametricFit, ci: dict[str, list[float]] | None = None) -> list[str]:
    """What the intervals of a parametric fit leave open although its values are identified.

    A fit whose E lies inside its bounds can still have refits that put E at 0: the resampled
    data then fit as well without a loss floor, so they do not rule one out, and the interval of
    ``a`` mixes refits with and without one. Nothing is flagged for a fit that is not identified
    (:func:`bound_issues` says why, E at its bound among the reasons) or when too few refits were
    accepted to judge an interval.

    >>> fit = ParametricFit(E=0.5, A=10.0, B=10.0, alpha=0.6, beta=0.2, loss="huber",
    ...                     objective=0.0, num_points=50)
    >>> bound_caveats(fit, {"E": [0.45, 0.6]})
    []
    >>> bound_caveats(fit, {"E": [1e-70, 0.6]})[0][:45]
    "E's interval [1e-70, 0.6] reaches its bound 0"
    """
    lo_hi = (ci or {}).get("E")
    if not lo_hi or lo_hi[0] > 1e-6 or bound_issues(fit, ci):
        return []
    return [f"E's interval [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}] reaches its bound 0: some refits fit "
            "as well without a loss floor, so the data do not rule out a law without one, and "
            "the interval of a mixes refits with and without one"]


def entry_caveats(entry: dict | None) -> list[str]:
    """The caveats of a ``fit.json`` entry that is identified (see :func:`bound_caveats`).

    None for an entry that is not identified (its issues say more) or written before caveats.

    >>> entry_caveats({"caveats": ["E's interval reaches 0"], "not_identified": []})
    ["E's interval reaches 0"]
    >>> entry_caveats({"caveats": ["x"], "not_identified": ["E = 0"]})
    []
    """
    entry = entry or {}
    return [] if entry.get("not_identified") else list(entry.get("caveats") or [])


def loss_prediction_issues(fit: LossPrediction, ci: dict[str, list[float]] | None = None
                           ) -> list[str]:
    """Why a loss prediction ``L_opt(C) = c0 C^-c + E`` is not identified (empty when it is).

    Its exponent at the edge of [-1, 1] or its floor at the lowest E allowed (0.1), or either
    with a bootstrap interval of zero width, is set by the bounds of the fit, not by the data.

    >>> loss_prediction_issues(LossPrediction(c0=2.0, c=1.0, E=1.5, num_points=20))
    ['c = 1 (at the edge of [-1, 1])']
    """
    (_, c_lo, e_lo), (_, c_hi, _) = LOSS_PREDICTION_BOUNDS
    out = []
    if fit.c <= c_lo + 1e-3 or fit.c >= c_hi - 1e-3:
        out.append(f"c = {fit.c:.3g} (at the edge of [{c_lo:g}, {c_hi:g}])")
    if fit.E <= e_lo * (1 + 1e-3):  # curve_fit stops just inside a bound
        out.append(f"E = {fit.E:.3g} (at its lower bound {e_lo:g})")
    return out + zero_width_issues({k: getattr(fit, k) for k in ("c", "E")}, ci)
