"""The ``absgd`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import absgd
from absgd.cli import main


def test_version_via_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "absgd", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"absgd {absgd.__version__}"


def test_help_and_usage_error_exit_codes(capsys):
    assert main([]) == 0
    assert "ABSGD" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2
