"""Reading curves from run directories (metrics.jsonl) and CSV files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaling.inputs import load_curves
from scaling.laws.synthetic import synthetic_curves
from tests.helpers.fits import write_runs


@pytest.fixture
def curves():
    return synthetic_curves(np.geomspace(1e6, 1e8, 4), points_per_curve=9)


def test_run_dirs_and_study_dir(tmp_path, curves):
    dirs = write_runs(tmp_path / "study", curves)
    a = load_curves(dirs)
    b = load_curves(tmp_path / "study")  # found recursively
    for c in (a, b):
        assert c.num_curves == 4 and c.num_points == curves.num_points  # step 0 row skipped
        np.testing.assert_allclose(np.sort(c.L), np.sort(curves.L))
    cut = np.sort(curves.D)[10]
    assert load_curves(dirs, min_tokens=cut).num_points == int((curves.D >= cut).sum())
    val = load_curves(dirs, loss_key="val/loss")
    assert val.num_points == 4 * 3
    with pytest.raises(ValueError, match="no rows with the loss key 'eval/x'.*--loss-key"):
        load_curves(dirs, loss_key="eval/x")


def test_metrics_with_flops_only_and_partial_last_line(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    rows = [{"params": 1e6, "flops": 6e14, "train/loss": 3.0},
            {"params": 1e6, "flops": 1.2e15, "train/loss": 2.9}]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"par')
    e = tmp_path / "s"
    e.mkdir()
    (e / "metrics.jsonl").write_text(json.dumps({"params": 2e6, "tokens": 1e8,
                                                 "train/loss": 2.8}) + "\n")
    c = load_curves([d, e])
    assert c.num_points == 3
    np.testing.assert_allclose(sorted(c.D), [1e8, 1e8, 2e8])


def test_bad_json_line_named(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"params": 1e6, "tokens": 1, "train/loss": 3}\nnot json\n'
                                     '{"params": 1e6, "tokens": 2, "train/loss": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not valid JSON"):
        load_curves(d)


def test_csv_with_D_or_C_and_run_column(tmp_path, curves):
    p = tmp_path / "c.csv"
    rows = ["N,C,L,run"] + [f"{n},{6 * n * d},{loss},r{int(n)}"
                            for n, d, loss in zip(curves.N, curves.D, curves.L, strict=True)]
    p.write_text("\n".join(rows) + "\n")
    c = load_curves(p)
    np.testing.assert_allclose(np.sort(c.D), np.sort(curves.D), rtol=1e-12)
    assert c.num_curves == 4 and c.names[0] == "r1000000"


def test_csv_missing_columns(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("N,loss\n1,2\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) L, D \(or C\)"):
        load_curves(p)


def test_csv_nan_rows_named_and_droppable(tmp_path, curves):
    p = tmp_path / "c.csv"
    L = curves.L.copy()
    L[2], L[5] = math.nan, math.inf
    rows = ["N,D,L"] + [f"{n},{d},{loss}" for n, d, loss in zip(curves.N, curves.D, L,
                                                                  strict=True)]
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"c\.csv:4, .*c\.csv:7"):
        load_curves(p)
    assert load_curves(p, drop_nonfinite=True).num_points == curves.num_points - 2


def test_csv_non_positive_and_non_numeric(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("N,D,L\n1e6,1e8,3\n-2e6,1e8,3\n")
    with pytest.raises(ValueError, match=r"N must be positive.*c\.csv:3"):
        load_curves(p)
    p.write_text("N,D,L\n1e6,lots,3\n")
    with pytest.raises(ValueError, match=r"D is not a number \('lots'\) at .*c\.csv:2"):
        load_curves(p)
    p.write_text("N,D,L\n1e6,1e8,3\n2e6,1e8,0\n3e6,1e8,-1\n")
    with pytest.raises(ValueError, match=r"loss must be positive.*c\.csv:3, .*c\.csv:4.*log L"):
        load_curves(p)


def test_csv_undividable_N_empty_D_and_spreadsheet_bom(tmp_path, curves):
    p = tmp_path / "c.csv"
    p.write_text("N,C,L\n1e6,6e14,3\n0,1e15,3\n")
    with pytest.raises(ValueError, match=r"N \(model size N\) is 0 at .*c\.csv:3.*D = C / \(6N\)"):
        load_curves(p)
    p.write_text("N,D,L\n1e6,1e8,3\n5e6,,3\n")
    with pytest.raises(ValueError, match=r"D is empty at .*c\.csv:3; fill it in, add a C column"):
        load_curves(p)
    rows = ["N,D,L"] + [f"{n},{d},{loss}" for n, d, loss in zip(curves.N, curves.D, curves.L,
                                                                  strict=True)]
    p.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")  # "CSV UTF-8" export
    assert load_curves(p).num_points == curves.num_points


def test_metrics_with_zero_params_or_null_losses(tmp_path, curves):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps({"params": 0, "flops": 1e12, "train/loss": 3.0})
                                     + "\n")
    with pytest.raises(ValueError, match=r"params \(model size N\) is 0 at .*metrics\.jsonl:1"):
        load_curves(d)
    from scaling.fitting import curves_from_runs

    dirs = write_runs(tmp_path / "study", curves)
    last = dirs[-1] / "metrics.jsonl"  # a run whose last loss was NaN (strict JSON: null)
    rows = [json.loads(line) for line in last.read_text().splitlines()]
    rows[-1]["train/loss"] = None
    last.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert curves_from_runs(dirs, "train/loss").num_points == curves.num_points - 1


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_curves(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        load_curves(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="cannot read"):
        load_curves(tmp_path / "x.txt")


def test_csv_with_D_and_C_columns_that_disagree_is_refused(tmp_path):
    rows = ["N,D,C,L", "1e7,1e9,6e16,3.0", "1e8,6e17,6e17,2.5"]  # FLOPs in D on row 3
    (tmp_path / "both.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"C = 6e\+17 is not 6ND.*both\.csv:3"):
        load_curves([tmp_path / "both.csv"])


def test_csv_without_a_run_column_keeps_close_sizes_apart(tmp_path):
    rows = ["N,D,L"] + [f"{n},{d},{3.0 - 0.1 * i}" for n in (1.0001e7, 1.0004e7, 3e7)
                        for i, d in enumerate((1e8, 1e9))]
    (tmp_path / "close.csv").write_text("\n".join(rows) + "\n")
    c = load_curves([tmp_path / "close.csv"])
    assert c.num_curves == 3 and "N=1.0001e+07" in c.names


def test_a_run_label_shared_by_two_sizes_is_refused():
    from scaling.laws.data import make_curves

    with pytest.raises(ValueError, match="run 'a' holds points of more than one model size"):
        make_curves([1e7, 1e7, 3e7, 3e7], [1e8, 1e9, 1e8, 1e9], [3.0, 2.8, 2.9, 2.7],
                    run=["a", "a", "a", "b"])


def test_runs_of_different_tasks_are_not_fitted_together(tmp_path, curves):
    dirs = write_runs(tmp_path / "study", curves)
    for d, task in zip(dirs, ["wm-token", "bc-cnn"] * len(dirs), strict=False):
        (d / "config.json").write_text(json.dumps({"task": task}))
    with pytest.raises(ValueError, match="mix runs of 2 tasks.*fit each task's runs apart"):
        load_curves([tmp_path / "study"])
    same = [d for d in dirs if json.loads((d / "config.json").read_text())["task"] == "wm-token"]
    assert load_curves(same).num_curves == len(same)  # one task's runs are fitted as before
