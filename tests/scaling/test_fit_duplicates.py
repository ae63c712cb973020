"""A point counts once in a fit: duplicate rows are dropped, a run given twice is refused."""

from __future__ import annotations

import json

import pytest

from scaling.inputs import load_curves


def _csv(path, rows):
    path.write_text("N,D,L,run\n" + "".join(f"{n},{d},{loss},{r}\n" for n, d, loss, r in rows))
    return path


def test_duplicate_rows_count_once(tmp_path, caplog):
    rows = [(1e4, 1e5, 3.0, "a"), (1e4, 1e6, 2.5, "a"), (3e4, 1e5, 2.9, "b"),
            (3e4, 1e6, 2.2, "b")]
    once = load_curves(_csv(tmp_path / "once.csv", rows))
    twice = load_curves(_csv(tmp_path / "twice.csv", rows + rows[:2]))
    assert twice.num_points == once.num_points == 4
    assert "dropping 2 duplicate rows" in caplog.text


def test_a_run_given_twice_is_refused(tmp_path):
    run = tmp_path / "study" / "run-a"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "params": 1e4, "tokens": 1e4 * s, "train/loss": 3.0 / s}) + "\n"
        for s in (1, 2, 4)))
    with pytest.raises(ValueError, match="given twice"):
        load_curves([run, run])
    with pytest.raises(ValueError, match="given twice"):
        load_curves([tmp_path / "study", run])  # a study directory and one of its runs


def test_null_losses_from_strict_json_read_as_nan(tmp_path):
    for name, n in (("small", 1e4), ("big", 3e4)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "params": n, "tokens": n * s, "train/loss": loss}) + "\n"
            for s, loss in ((1, 3.0), (2, 2.5), (4, None))))
    with pytest.raises(ValueError, match="not finite|NaN|non-finite"):
        load_curves([tmp_path / "small", tmp_path / "big"])
    curves = load_curves([tmp_path / "small", tmp_path / "big"], drop_nonfinite=True)
    assert curves.num_points == 4
