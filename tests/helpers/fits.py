"""Run directories as the trainer writes them, for the fit tests."""

from __future__ import annotations

import json


def write_runs(root, curves, val_every=3, step0=True, sizes_name="m"):
    """One run directory per curve, as the trainer writes them."""
    dirs = []
    for i, sl in enumerate(curves.curve_slices()):
        d = root / f"{sizes_name}{i}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"model": {"n_layer": i + 1}}))
        lines = []
        if step0:
            lines.append({"step": 0, "tokens": 0, "flops": 0, "params": curves.N[sl][0],
                          "train/loss": 10.0, "lr": 0.0})
        for j, (n, d_, loss) in enumerate(zip(curves.N[sl], curves.D[sl], curves.L[sl],
                                             strict=True)):
            rec = {"step": j + 1, "tokens": d_, "flops": 6 * n * d_, "params": n,
                   "train/loss": loss, "lr": 1e-3, "tokens_per_s": 1e4}
            if j % val_every == 0:
                rec["val/loss"] = loss * 1.01
            lines.append(rec)
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        dirs.append(d)
    return dirs
