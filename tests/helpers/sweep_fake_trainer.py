"""A stand-in training entry for the sweep machinery's unit tests only (no model is trained).

It writes a metrics.jsonl the way the trainer does, checkpoints its step after every step and
resumes from it, and crashes on request (env FAKE_CRASH_AT) so resumption can be tested.
"""

from __future__ import annotations

import json
import os
import time


def train(run):
    if os.environ.get("FAKE_BAD_CONFIG"):  # refused before the first step, as a bad override is
        raise ValueError("TrainConfig.learning_rate -1 is not a usable learning rate")
    d = run.run_dir
    ckpt = d / "checkpoints" / "state.json"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    steps = int(run.tokens // 100)
    crash_at = int(os.environ.get("FAKE_CRASH_AT", "0") or 0)
    start = time.time()
    with open(d / "metrics.jsonl", "a") as f:
        while step < steps:
            step += 1
            f.write(json.dumps({"step": step, "tokens": step * 100, "params": run.params,
                                "flops": 6 * run.params * step * 100,
                                "train/loss": 5.0 / step}) + "\n")
            f.flush()
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": step}))
            os.replace(tmp, ckpt)
            time.sleep(float(os.environ.get("FAKE_STEP_S", "0.0")))
            if crash_at and step == crash_at:
                raise SystemExit(3)
    return {"start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS"),
            "pid": os.getpid()}


def train_law(run):
    """Log the loss of a known law ``L(N, D)`` on the trainer's step grid.

    The law is ``EPOCH_LAW`` with B at 0.3 of its value, which moves the compute optimum of the
    ladder's small sizes to D of 1e4-1e5 tokens, within a test's token shards.

    Steps are as long as the trainer's would be (``planned_tokens_per_step``), points fall on the
    trainer's log grid, and a run given a larger budget continues its curve; curves of different
    sizes cross where the law's compute-optimal size passes between them.
    """
    from scaling.laws.synthetic import EPOCH_LAW
    from scaling.study.budget_rounds import planned_tokens_per_step
    from worldmodels.train_utils import is_log_step

    law, per = {**EPOCH_LAW, "B": 0.3 * EPOCH_LAW["B"]}, planned_tokens_per_step(run)
    d = run.run_dir
    d.mkdir(parents=True, exist_ok=True)
    path = d / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    step = json.loads(lines[-1])["step"] if lines else 0
    steps = int(run.budget_tokens // per)
    with open(path, "a") as f:
        while step < steps:
            step += 1
            if not (is_log_step(step, 5) or step == steps):
                continue
            tokens = step * per
            loss = (law["E"] + law["A"] * run.params ** -law["alpha"]
                    + law["B"] * tokens ** -law["beta"])
            f.write(json.dumps({"step": step, "tokens": tokens, "params": run.params,
                                "flops": 6 * run.params * tokens, "train/loss": loss,
                                "train/loss_mean": loss}) + "\n")
    return {}
