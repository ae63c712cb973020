"""The Section 5.1 ladders under the frontier-seeking budget protocol, and their frontier fits.

Every (loss, size) run starts at the experiment's characters per run; after each round the
protocol (``scaling.study.budget_rounds.run_protocol``, the same one the studies run) extends the
runs whose neighbouring sizes have not crossed yet, within the experiment's FLOPs budget (a
third per loss) and 4 passes over the text's training part. Runs resume from their last
checkpoint with the larger budget, so a ladder trained before keeps its curves and only the
extensions are new, and an interrupted experiment continues the same curves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scaling.fitting import fit_curves
from scaling.laws.analysis import FitOptions
from scaling.laws.data import Curves, FitError
from scaling.mechanisms.char_lm import CharCorpus, CharDataSource, build_char_model
from scaling.mechanisms.common import estimate
from scaling.study.budget_protocol import ProtocolConfig
from scaling.study.budget_rounds import PROTOCOL_FILE, run_protocol
from scaling.study.report_protocol import data_limit_note
from scaling.study.sweep import RunSpec


def train_ladders(cfg, job: Callable[[str, str, float], dict],
                  run_all: Callable[[list[dict]], list[dict]]) -> list[dict]:
    """Train every ladder of ``cfg`` (a ``Section51Config``) in protocol rounds.

    Args:
        cfg: the experiment (``out``, ``text``, ``sizes``, ``losses``, ``tokens`` as the first
            round, ``study_flops`` (0: twice the first round), ``batch_size``, ``context``,
            ``val_points_per_decade``).
        job: ``job(loss, size, tokens)`` -> the job description of one run at that budget.
        run_all: trains a list of jobs (resuming started runs); returns one summary per job.

    Returns:
        The last round's summary of every run (the protocol's log is ``protocol.json``).
    """
    corpus = CharCorpus(cfg.text)
    data = CharDataSource(corpus, cfg.context)
    runs = []
    for loss in cfg.losses:
        for size in cfg.sizes:
            n = build_char_model(size, corpus.vocab_size, loss, cfg.context).num_params()
            runs.append(RunSpec(name=f"{loss}-{size}", task=loss, size=size, seed=cfg.seed,
                                out_dir=str(Path(cfg.out) / "runs" / loss / size),
                                data=Path(cfg.text).name, tokens=cfg.tokens, params=n))
    summaries: dict[str, dict] = {}

    def sweep(current: list[RunSpec]) -> None:
        done = run_all([job(r.task, r.size, float(r.tokens)) for r in current])
        summaries.update({f"{s['loss']}-{s['size']}": s for s in done})

    per_update = cfg.batch_size * cfg.context
    budget = cfg.study_flops or 2.0 * sum(6.0 * r.params * r.budget_tokens for r in runs)
    run_protocol(
        runs, ProtocolConfig(budget=budget, val_points_per_decade=cfg.val_points_per_decade),
        Path(cfg.out) / PROTOCOL_FILE, sweep, {r.name: per_update for r in runs},
        data={loss: (float(data.num_train_items), 1) for loss in cfg.losses},
        shares={loss: 1.0 / len(cfg.losses) for loss in cfg.losses})
    return [summaries[r.name] for r in runs]


def frontier_estimate(curves: Curves, opts: FitOptions, out: Path, loss: str) -> dict:
    """The frontier fit of one ladder, or why it is not identified.

    Returns:
        ``{"a": Estimate, "sizes": sizes on the frontier, "no_interval": reason or None}``, or
        ``{"reason": ...}`` (the data limit, when the protocol stopped the ladder there).
    """
    try:
        res = fit_curves(curves, opts, loss_key="val/loss").analysis
    except FitError as e:
        return {"reason": data_limit_note(Path(out), loss, "training characters") or str(e)}
    boot = res.boot.get("frontier")
    return {"a": estimate(res.frontier.a, boot.samples.get("a") if boot else None),
            "sizes": int(res.frontier.num_models), "no_interval": res.ci_errors.get("frontier")}
