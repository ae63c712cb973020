"""Scaling-law fits on training curves: numpy and scipy only (no torch, nothing of ours).

>>> from scaling.laws import synthetic_curves, fit_frontier
>>> round(fit_frontier(synthetic_curves()).a, 2)
0.51
"""

from scaling.laws.analysis import Analysis, FitOptions, analyze, extrapolation_check
from scaling.laws.data import Curves, FitError, make_curves
from scaling.laws.frontier import (
                                   FRONTIER_POINTS,
                                   POOLS,
                                   Envelope,
                                   FrontierFit,
                                   LossPrediction,
                                   envelope,
                                   fit_frontier,
                                   fit_loss_prediction,
)
from scaling.laws.identification import bound_caveats, bound_issues
from scaling.laws.isoflop import IsoflopFit, fit_isoflop
from scaling.laws.parametric import ParametricFit, fit_huber, fit_lsq, fit_parametric
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves
from scaling.laws.uncertainty import SCHEMES, Bootstrap, bootstrap

__all__ = [
    "EPOCH_LAW", "FRONTIER_POINTS", "POOLS", "SCHEMES", "Analysis", "Bootstrap", "Curves",
    "Envelope", "FitError", "FitOptions", "bound_caveats", "bound_issues",
    "FrontierFit", "IsoflopFit", "LossPrediction", "ParametricFit", "analyze", "bootstrap",
    "envelope", "extrapolation_check", "fit_frontier", "fit_huber", "fit_isoflop",
    "fit_loss_prediction", "fit_lsq", "fit_parametric", "make_curves", "synthetic_curves",
]
