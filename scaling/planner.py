"""Compute-optimal planning from a ``fit.json``: model and data size, loss, preset, data check.

Example:
    embscale plan --fit runs/fit/fit.json --flops 1e18 --dataset-tokens 2e9
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from scaling.laws.identification import entry_caveats, entry_issues
from worldmodels.presets import SIZE_PRESETS
from worldmodels.train_config import INFINITE_DATA_PASSES

logger = logging.getLogger(__name__)

MAX_EPOCHS = INFINITE_DATA_PASSES  # passes over the data within the infinite-data regime


@dataclass(frozen=True)
class Preset:
    """A model size preset: name, parameter count and GPT shape."""

    name: str
    num_params: float
    n_layer: int
    n_head: int
    n_embd: int


def _nominal(name: str) -> float | None:
    m = re.fullmatch(r"s?(\d+(?:\.\d+)?)([kKMG])", name)
    if not m:
        return None
    return float(m.group(1)) * {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


def load_presets() -> tuple[Preset, ...]:
    """The model-size presets of ``worldmodels.presets``, smallest first.

    A preset's parameter count is its ``paper_params`` (the paper's Table 2 and our Table 7
    shapes), else its name read as a size (``"s30k"``). The count is nominal: the real N depends
    on vocabulary and context.
    """
    out = []
    for name, size in SIZE_PRESETS.items():
        n = size.paper_params or _nominal(name)
        if n is not None:
            out.append(Preset(name, n, size.n_layer, size.n_head, size.n_embd))
    return tuple(sorted(out, key=lambda p: p.num_params))


@dataclass(frozen=True)
class Plan:
    """A compute-optimal plan. Sizes in parameters and tokens, compute in FLOPs."""

    flops: float
    N_opt: float
    D_opt: float
    loss: float | None
    loss_source: str | None
    allocation_source: str
    preset: Preset
    dataset_tokens: float | None = None
    caveats: tuple[str, ...] = ()
    """Why the advice may not be trustworthy (a degenerate fit), one sentence each."""

    @property
    def epochs(self) -> float | None:
        """Passes over the dataset that ``D_opt`` needs."""
        return None if self.dataset_tokens is None else self.D_opt / self.dataset_tokens

    @property
    def supported(self) -> bool | None:
        """Whether the dataset covers ``D_opt`` within :data:`MAX_EPOCHS` passes."""
        return None if self.epochs is None else self.epochs <= MAX_EPOCHS

    @property
    def max_flops_in_regime(self) -> float | None:
        """Largest compute for ``N_opt`` in the infinite-data regime: 6 N (4 T)."""
        if self.dataset_tokens is None:
            return None
        return 6.0 * self.N_opt * MAX_EPOCHS * self.dataset_tokens

    def to_dict(self) -> dict:
        """JSON-able form (``embscale plan --json``, the study's ``advice.json``)."""
        return {"flops": self.flops, "N_opt": self.N_opt, "D_opt": self.D_opt,
                "loss": self.loss, "loss_source": self.loss_source,
                "allocation_source": self.allocation_source, "preset": self.preset.name,
                "preset_params": self.preset.num_params, "dataset_tokens": self.dataset_tokens,
                "epochs": self.epochs, "supported": self.supported,
                "max_flops_in_regime": self.max_flops_in_regime, "caveats": list(self.caveats)}


# Below these the advice is not a model or dataset anyone can train: the law is degenerate.
_MIN_SENSIBLE_N = 1e3
_MIN_SENSIBLE_D = 1e3
# Exponents outside this range come from a fit that hit its bounds or has no curvature.
_EXPONENT_RANGE = (0.15, 5.0)


def caveats(fit: dict, source: str, N: float, D: float) -> tuple[str, ...]:
    """Reasons to distrust a plan, one sentence each (empty when there are none).

    Flags a parametric law without a floor or with extreme exponents, and an allocation below
    any trainable size.

    >>> caveats({"parametric": {"status": "ok", "E": 0.0, "alpha": 0.1, "beta": 0.5}},
    ...         "parametric", 1e6, 1e8)[0][:38]
    'the parametric fit has no loss floor ('
    """
    out = []
    p = _ok(fit, "parametric")
    if source == "parametric" and p is not None:
        if p.get("E", 1.0) < 1e-6:
            out.append(f"the parametric fit has no loss floor (E = {p['E']:.3g}): the curves did "
                       "not flatten, so the allocation extrapolates a law fitted without one; "
                       "train longer or add sizes before trusting it")
        lo, hi = _EXPONENT_RANGE
        for name in ("alpha", "beta"):
            v = p.get(name)
            if v is not None and not lo <= v <= hi:
                out.append(f"the parametric exponent {name} = {v:.3g} lies outside [{lo:g}, "
                           f"{hi:g}]: the fit is near its bounds or flat in that direction")
        if not out and p.get("not_identified"):
            out.append(f"the parametric fit is not identified ({'; '.join(p['not_identified'])}):"
                       " its allocation rests on a parameter set by the fit's bounds")
        out += [f"the parametric fit is identified, but {c}" for c in entry_caveats(p)]
    if N < _MIN_SENSIBLE_N or D < _MIN_SENSIBLE_D:
        out.append(f"N_opt = {N:.3g} parameters and D_opt = {D:.3g} tokens: below any model "
                   "or dataset one would train, so the allocation law is degenerate")
    return tuple(out)


def _ok(fit: dict, name: str) -> dict | None:
    entry = fit.get(name)
    return entry if isinstance(entry, dict) and entry.get("status") == "ok" else None


def _allocation(fit: dict, source: str) -> tuple[str, dict]:
    """The allocation law: ``source``, or with ``auto`` the first identified one.

    ``auto`` takes the first identified of frontier, parametric and IsoFLOP, else the first
    usable one (its plan then carries a caveat).
    """
    order = ("frontier", "parametric", "isoflop") if source == "auto" else (source,)
    usable = [(name, e) for name in order if (e := _ok(fit, name)) is not None
              and all(k in e for k in ("a", "a0", "b", "b0"))]
    for name, entry in sorted(usable, key=lambda law: bool(entry_issues(*law))):
        return name, entry
    raise ValueError(f"the fit file has no usable {' or '.join(order)} fit (skipped or missing);"
                     f" rerun 'embscale fit' with more data or choose another --source")


def _unidentified_allocation_caveat(fit: dict, name: str) -> tuple[str, ...]:
    if name == "parametric":  # caveats() speaks of the parametric law itself
        return ()
    issues = entry_issues(name, fit[name])
    if not issues:
        return ()
    return (f"the allocation comes from the {name} fit, which is not identified "
            f"({'; '.join(issues)}): read N_opt and D_opt as a rough guess",)


def loss_law(fit: dict) -> tuple[str | None, dict | None]:
    """The law that predicts the loss: ``(name, entry)``, or ``(None, None)`` without one.

    The loss prediction ``L_opt(C)`` (paper eq. 8), else the parametric law along the allocation;
    an identified fit before one whose parameters sit at their bounds (``not_identified``), which
    is used only when no identified one is left, and among identified ones a loss prediction
    from a censored envelope (``censored``: an upper bound on the optimal loss) last.

    >>> fit = {"loss_prediction": {"status": "ok", "not_identified": ["c = 1 (at the edge)"]},
    ...        "parametric": {"status": "ok", "not_identified": []}}
    >>> loss_law(fit)[0]
    'parametric'
    """
    laws = [(name, _ok(fit, name)) for name in ("loss_prediction", "parametric")]
    laws = [(name, e) for name, e in laws if e is not None]
    for name, e in sorted(laws, key=lambda law: (bool(law[1].get("not_identified")),
                                                 bool(law[1].get("censored")))):
        return name, e
    return None, None


def _loss_at(fit: dict, C: float, N: float, D: float) -> tuple[float | None, str | None]:
    name, e = loss_law(fit)
    if name == "loss_prediction":
        return e["c0"] * C ** -e["c"] + e["E"], name
    if name == "parametric":
        return e["E"] + e["A"] * N ** -e["alpha"] + e["B"] * D ** -e["beta"], name
    return None, None


FAR_EXTRAPOLATION = 1e3
"""Compute beyond the largest a fit saw, as a factor, past which a plan says it is a guess."""


def _extrapolation_caveat(fit: dict, flops: float) -> tuple[str, ...]:
    """A sentence when ``flops`` lies far beyond the compute of the fitted curves."""
    seen = [c.get("C_max") for c in (fit.get("data") or {}).get("curves") or []]
    seen = [float(c) for c in seen if c]
    if not seen or flops <= FAR_EXTRAPOLATION * max(seen):
        return ()
    decades = math.log10(flops / max(seen))
    return (f"C = {flops:.3g} FLOPs lies {decades:.1f} decades beyond the largest compute the "
            f"fit saw ({max(seen):.3g}): a power law extrapolated that far is a guess",)


def _unidentified_loss_caveat(fit: dict) -> tuple[str, ...]:
    name, e = loss_law(fit)
    if e and e.get("censored") and not e.get("not_identified"):
        return ("the loss comes from a loss prediction fitted to a censored envelope (fewer than "
                "4 compute points where the optimal size was bracketed by a smaller and a "
                "larger one): read it as an upper bound on the compute-optimal loss",)
    if caveats := entry_caveats(e):
        return (f"the loss comes from the {name.replace('_', ' ')} fit, which is identified, but "
                f"{'; '.join(caveats)}",)
    if not e or not e.get("not_identified"):
        return ()
    return (f"the loss comes from the {name.replace('_', ' ')} fit, which is not identified "
            f"({'; '.join(e['not_identified'])}): a parameter set by the fit's bounds rather than "
            "the data, so read the loss (and the compute for a target loss) as a rough guess",)


def plan(fit: dict, *, flops: float | None = None, loss: float | None = None,
         dataset_tokens: float | None = None, source: str = "auto",
         presets: tuple[Preset, ...] | None = None) -> Plan:
    """Plan a run for compute ``flops`` or for a target ``loss`` (exactly one).

    Args:
        fit: the ``fit.json`` object.
        flops: compute budget (FLOPs).
        loss: target loss; the compute needed comes from the law :func:`loss_law` picks (the
            loss prediction, or the parametric law along the optimal allocation; an identified
            one first).
        dataset_tokens: unique training inputs in the dataset, to check the infinite-data regime.
        source: allocation law: ``auto`` (the first identified of frontier, parametric and
            isoflop, else the first usable one), or one of them.
        presets: candidate presets; default :func:`load_presets`.

    Raises:
        ValueError: on bad arguments, an unusable fit, or an unreachable loss.
    """
    if (flops is None) == (loss is None):
        raise ValueError("give exactly one of a compute budget (--flops) or a target loss "
                         "(--loss)")
    if source not in ("auto", "frontier", "parametric", "isoflop"):
        raise ValueError(f"source must be auto, frontier, parametric or isoflop, got {source!r}")
    if dataset_tokens is not None and not dataset_tokens > 0:
        raise ValueError(f"dataset tokens must be positive, got {dataset_tokens}")
    name, law = _allocation(fit, source)

    def alloc(C):
        return law["a0"] * C ** law["a"], law["b0"] * C ** law["b"]

    if loss is not None:
        flops = _flops_for_loss(fit, loss, alloc)
    if not (flops > 0 and math.isfinite(flops)):
        raise ValueError(f"compute budget must be a positive number of FLOPs, got {flops}")
    N, D = alloc(flops)
    L, lsrc = _loss_at(fit, flops, N, D)
    presets = presets or load_presets()
    best = min(presets, key=lambda p: abs(math.log(p.num_params / N)))
    return Plan(flops=float(flops), N_opt=float(N), D_opt=float(D), loss=L, loss_source=lsrc,
                allocation_source=name, preset=best, dataset_tokens=dataset_tokens,
                caveats=(caveats(fit, name, N, D) + _unidentified_allocation_caveat(fit, name)
                         + _unidentified_loss_caveat(fit) + _extrapolation_caveat(fit, flops)))


def _flops_for_loss(fit: dict, target: float, alloc) -> float:
    name, law = loss_law(fit)
    if name == "loss_prediction":
        if target <= law["E"] or law["c"] <= 0:
            raise ValueError(f"target loss {target:g} is not reachable: the predicted "
                             f"compute-optimal loss only approaches E={law['E']:.4g}; ask for a "
                             f"loss above that")
        return ((target - law["E"]) / law["c0"]) ** (-1.0 / law["c"])
    p = law
    if p is None:
        raise ValueError("a target loss needs a loss prediction or parametric fit in the fit "
                         "file; rerun 'embscale fit' or pass --flops")
    if target <= p["E"]:
        raise ValueError(f"target loss {target:g} is at or below the fitted irreducible loss "
                         f"E={p['E']:.4g}; ask for a loss above E")
    lo, hi = 0.0, 200.0  # bisection on log10 C: the optimal loss falls with compute
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        val, _ = _loss_at(fit, 10.0 ** mid, *alloc(10.0 ** mid))  # the parametric law
        lo, hi = (mid, hi) if val > target else (lo, mid)
    reached, _ = _loss_at(fit, 10.0 ** hi, *alloc(10.0 ** hi))
    if not reached <= target * (1 + 1e-9):  # the allocation never brings the law down to it
        raise ValueError(f"target loss {target:g} is not reachable: along the fit's "
                         f"allocation the parametric law stays above it up to 1e200 FLOPs (at "
                         f"best {reached:.4g}); ask for a higher loss or check the fit")
    return 10.0 ** hi
