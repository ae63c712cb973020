"""Loss vs return and loss vs quality: checkpoints evaluated one at a time against in parallel.

Run on a finished study (the main job's, by default), in one process, so both settings see the
same machine:

    .venv/bin/python benchmarks/bench_eval_pool.py [--study default] [--parallel 2] \
        [--only return|quality] [--repeats 1]

For each correlation study it scores the study's checkpoints into two temporary directories,
first in this process (``parallel=1``, the torch threads of every core) and then in ``--parallel``
worker processes (``scaling.study.eval_pool``, the cores split between them), alternating the
order over ``--repeats`` rounds, and prints each setting's seconds, their ratio, and whether the
two settings' rows agree (returns equal; quality scores equal to 1e-4 relative, since the thread
count moves floating-point sums by rounding, and FVD's matrix square root enlarges that: one
default checkpoint's FVD moved by 1.2e-6 of itself between 1 and 2 threads, its clips equal).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _rows(out: Path) -> dict[str, dict]:
    return {json.loads(line)["checkpoint"]: json.loads(line)
            for line in (out / "rows.jsonl").read_text().splitlines()}


def _agree(a: dict, b: dict, keys: tuple[str, ...]) -> bool:
    import math

    return a.keys() == b.keys() and all(
        (a[k][key] == b[k][key]) if isinstance(a[k][key], list)
        else math.isclose(a[k][key], b[k][key], rel_tol=1e-4, abs_tol=1e-9)
        for k in a for key in keys)


def main() -> None:
    from scaling.study.presets import get_preset
    from scaling.study.steps import plan_runs, quality_study, return_study
    from scaling.study.sweep import collect_results
    from worldmodels.threads import usable_cores

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", default="default", help="a study preset whose runs are trained")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", choices=("return", "quality"), help="one of the two studies")
    args = ap.parse_args()
    spec = get_preset(args.study)
    runs = plan_runs(spec)
    bc = [d for t in ("bc-token", "bc-cnn") for d in collect_results(runs, t)]
    wm = collect_results(runs, "wm-token")
    studies = {  # the study's own stages, into a temporary directory, at a given parallel
        "loss vs return": (lambda out, p: return_study(
            dataclasses.replace(spec, parallel=p), progress=False, out_dir=out), ("returns",)),
        "loss vs quality": (lambda out, p: quality_study(
            dataclasses.replace(spec, parallel=p), progress=False, out_dir=out),
            ("fvd", "lpips", "psnr", "ssim")),
    }
    print(f"study {spec.name}: {len(bc)} BC runs, {len(wm)} world-model runs; "
          f"{usable_cores()} cores")
    print("| study | checkpoints | 1 process s | "
          f"{args.parallel} workers s | ratio | rows agree |")
    print("|---|---|---|---|---|---|")
    for name, (score, keys) in studies.items():
        if args.only and not name.endswith(args.only):
            continue
        seconds = {1: [], args.parallel: []}
        agree = True
        for r in range(args.repeats):
            order = [1, args.parallel] if r % 2 == 0 else [args.parallel, 1]
            rows = {}
            for p in order:
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    score(Path(tmp), p)
                    seconds[p].append(time.perf_counter() - start)
                    rows[p] = _rows(Path(tmp))
            agree &= _agree(rows[1], rows[args.parallel], keys)
        one, many = (sum(seconds[p]) / len(seconds[p]) for p in (1, args.parallel))
        print(f"| {name} | {len(rows[1])} | {one:.1f} | {many:.1f} | {one / many:.2f} | "
              f"{'yes' if agree else 'no'} |")


if __name__ == "__main__":
    main()
