"""Thread defaults of the commands and quiet OpenMP."""

import subprocess
import sys

import pytest

from worldmodels.threads import apply_threads, default_threads, usable_cores


def test_default_threads_split_the_cores_between_processes(monkeypatch):
    for name in ("EMBSCALE_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert default_threads() == usable_cores()
    assert default_threads(processes=4 * usable_cores()) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(usable_cores()))
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("EMBSCALE_THREADS", "2")
    assert default_threads() == 2
    with pytest.raises(ValueError, match="--threads -1"):
        apply_threads(-1)


@pytest.mark.parametrize("argv", [["train"], ["tokenizer", "encode"], ["eval", "policy"],
                                  ["eval", "loss"], ["dream"], ["dyna"], ["play"]])
def test_every_computing_command_has_a_threads_option(argv):
    from scaling.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[argv[0]]
    if len(argv) > 1:
        sub = sub._subparsers._group_actions[0].choices[argv[1]]
    assert any("--threads" in a.option_strings and a.default is None for a in sub._actions)


def test_the_cli_makes_openmp_wait_passively():
    code = ("import os; os.environ.pop('OMP_WAIT_POLICY', None); import scaling.cli; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "PASSIVE"
