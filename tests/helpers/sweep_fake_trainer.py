"""A stand-in training entry for the sweep machinery's unit tests only (no model is trained).

It writes a metrics.jsonl the way the trainer does, checkpoints its step after every step and
resumes from it, and crashes on request (env FAKE_CRASH_AT) so resumption can be tested.
"""

from __future__ import annotations

import json
import os
import time


def train(run):
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
    return {"start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS")}
