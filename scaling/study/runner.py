"""A whole scaling study in one call: dataset -> tokenizer -> sweeps -> fits -> studies -> report.

Every stage writes its outputs atomically under ``runs/<study>/`` and is skipped when they exist,
so a study that was interrupted continues where it stopped when it is started again:

```
runs/<study>/study.json            the spec, its fingerprint and the time of each stage
runs/<study>/dataset.json          dataset summary
runs/<study>/tokenizer/            the frozen tokenizer (when trained here)
runs/<study>/tokens/               token shards of the dataset
runs/<study>/<task>-<size>-seed<k>/  training runs (config.json, metrics.jsonl, checkpoints/)
runs/<study>/fits/<task>/          fit.json, Table-1 row, Figure-5 plots
runs/<study>/loss_vs_return/       BC checkpoints in the real env
runs/<study>/loss_vs_quality/      world-model rollouts scored with FVD/LPIPS/PSNR/SSIM
runs/<study>/report/               report.md, report.html, media/
```

Example:
    run_study(default_study())
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from scaling.study import steps
from scaling.study.report import write_study_report
from scaling.study.spec import StudySpec
from scaling.study.sweep import _diff
from scaling.study.time_limit import TimeLimit

logger = logging.getLogger(__name__)

STAGES = ("dataset", "tokenizer", "sweep", "fit", "loss_vs_return", "loss_vs_quality", "report")


class StudyMismatchError(ValueError):
    """The study directory was made with a different dataset or tokenizer."""


def _record(study_dir: Path) -> dict[str, Any]:
    path = study_dir / "study.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        why = None if isinstance(record, dict) else "not a JSON object"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = str(e)
    if why is not None:
        raise ValueError(f"{path} is damaged ({why}); repair it, or delete it to have it "
                         "rewritten (the study's finished stages are kept)")
    return record


def check_study_dir(spec: StudySpec, allow_mixed: bool = False) -> dict[str, Any]:
    """Refuse to reuse a study directory made with another dataset or tokenizer."""
    old = _record(spec.study_dir)
    if old and old.get("shared") != spec.shared_config():
        diffs = _diff(old.get("shared"), spec.shared_config())
        msg = (f"{spec.study_dir} was made with another dataset/tokenizer spec ("
               + "; ".join(diffs[:6]) + "): every run in it depends on them. Fix: restore the "
               "original spec, give the study a new name (--name), or pass --allow-mixed.")
        if not allow_mixed:
            raise StudyMismatchError(msg)
        logger.warning(msg)
    return old


def run_study(spec: StudySpec, stages: tuple[str, ...] = STAGES, allow_mixed: bool = False,
              progress: bool = True, echo: Callable[[str], None] | None = None,
              time_limit: TimeLimit | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of a study; returns what each stage produced.

    Args:
        spec: the study.
        stages: the stages to run (in pipeline order); later stages need earlier outputs.
        allow_mixed: keep going when existing outputs were made with a different spec.
        progress: show progress bars.
        echo: called with one line per stage start/end (the CLI prints them).
        time_limit: the whole job's wall-clock limit; the frontier protocol's budget is capped
            so that the sweep leaves the later stages their time (``scaling.study.time_limit``).
    """
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {STAGES}")
    echo = echo or (lambda line: logger.info("%s", line))
    study_dir = spec.study_dir
    record = check_study_dir(spec, allow_mixed)
    steps.validate_spec(spec)  # before anything is written: a rejected spec leaves no trace
    echo(f"study {spec.name}: {', '.join(stages)} -> {study_dir}")
    study_dir.mkdir(parents=True, exist_ok=True)
    record.update({"name": spec.name, "spec": spec.to_dict(), "shared": spec.shared_config(),
                   "fingerprint": spec.fingerprint()})
    record.setdefault("stage_seconds", {})
    record.pop("job", None)  # this invocation's, written before its report (a time limit's)
    write_text_atomic(study_dir / "study.json", json.dumps(record, indent=2))
    outputs: dict[str, Any] = {}
    t_start = time.time()
    for i, stage in enumerate(s for s in STAGES if s in stages):
        if stage == "loss_vs_return" and not spec.loss_vs_return.enabled:
            continue
        if stage == "loss_vs_quality" and not spec.loss_vs_quality.enabled:
            continue
        echo(f"[{i + 1}/{len(stages)}] {stage} ...")
        t0 = time.time()
        if stage == "report" and time_limit is not None:  # the job's time, setup included
            record["job"] = {"seconds": round(t0 - time_limit.started_at, 1),
                             "limit_s": time_limit.seconds}
            write_text_atomic(study_dir / "study.json", json.dumps(record, indent=2))
        outputs[stage] = _run_stage(stage, spec, allow_mixed, progress, time_limit)
        dt = time.time() - t0
        # Seconds of this invocation only (the report says "last invocation").
        record["stage_seconds"][stage] = round(dt, 1)
        write_text_atomic(study_dir / "study.json", json.dumps(record, indent=2))
        echo(f"[{i + 1}/{len(stages)}] {stage} done in {dt:.0f} s "
             f"(study so far {time.time() - t_start:.0f} s)")
    return outputs


def _run_stage(stage: str, spec: StudySpec, allow_mixed: bool, progress: bool,
               time_limit: TimeLimit | None) -> Any:
    if stage == "dataset":
        return steps.ensure_dataset(spec, progress=progress)
    if stage == "tokenizer":
        return steps.ensure_tokens(spec, progress=progress)
    if stage == "sweep":
        return steps.run_study_sweep(spec, allow_mixed=allow_mixed, progress=progress,
                                     time_limit=time_limit)
    if stage == "fit":
        return steps.fit_tasks(spec)
    if stage == "loss_vs_return":
        return steps.return_study(spec, progress=progress)
    if stage == "loss_vs_quality":
        return steps.quality_study(spec, progress=progress)
    if stage == "report":
        return write_study_report(spec)
    raise AssertionError(stage)
