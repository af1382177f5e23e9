"""make: the README's two commands on a machine that is not quite ready."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

# Under pytest-xdist (make test), the make runs go one after another on one worker.
SERIAL = pytest.mark.xdist_group("serial")

# --- make: the README's two commands on a machine that is not quite ready ---------------------


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", *args], cwd=Path(__file__).parent, capture_output=True, text=True
    )


@SERIAL
def test_make_says_which_python_is_needed_before_installing_anything(tmp_path: Any) -> None:
    old = tmp_path / "python3"
    old.write_text(
        '#!/bin/sh\ncase "$*" in *--version*) echo "Python 3.9.2";; *) echo False;; esac\n'
    )
    old.chmod(0o755)
    result = make_dry_run("run", f"PYTHON={old}", f"VENV={tmp_path / '.venv'}")
    assert result.returncode != 0
    assert "Hedwig needs Python 3.11 or newer, and" in result.stderr
    assert "is Python 3.9.2" in result.stderr
    assert not (tmp_path / ".venv").exists()


@SERIAL
def test_make_rebuilds_a_venv_made_by_another_python(tmp_path: Any) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 3.10.4\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".installed-run").touch()
    result = make_dry_run("run", f"VENV={venv}")
    assert result.returncode == 0, result.stderr
    assert f"-m venv {venv}" in result.stdout
    assert not venv.exists()
