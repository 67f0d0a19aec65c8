"""``make run`` installs what running needs, ``make test`` the dev tools too, and
``make run`` keeps its data in the checkout's ``.lookout`` (issue 12, item 22). The
Makefile runs for real in a scratch copy, with a stand-in Python that records what it is
asked to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
# A stand-in for python3 and .venv/bin/python: records its arguments.
echo "python $*" >> "$CALLS"
case "$1 $2" in
  "-m venv")
    mkdir -p "$3/bin"
    cp "$0" "$3/bin/python"
    printf '#!/bin/sh\\necho "lookout $* LOOKOUT_DATA_DIR=$LOOKOUT_DATA_DIR" >> "$CALLS"\\n' \
      > "$3/bin/lookout"
    chmod +x "$3/bin/lookout"
    ;;
esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    where = tmp_path / "checkout"
    where.mkdir()
    shutil.copy(ROOT / "Makefile", where / "Makefile")
    (where / "pyproject.toml").write_text("[project]\nname = 'lookout'\n")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return where


def make(checkout: Path, *args: str, **env: str) -> list[str]:
    """Run make in ``checkout`` (from elsewhere, with -C); the calls recorded since."""
    calls = checkout.parent / "calls"
    calls.write_text("")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME") or k.startswith("LC_")}
    result = subprocess.run(
        ["make", "-s", "-C", str(checkout), f"PYTHON={checkout.parent / 'python3'}", *args],
        env={**base, "CALLS": str(calls), **env},
        cwd=checkout.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [c.split("install", 1)[1].split()[-1] for c in calls if "-m pip install" in c]


def test_make_run_installs_only_what_running_needs(checkout: Path) -> None:
    calls = make(checkout, "run")
    assert installs(calls) == ["."], "the runtime dependencies, not the dev extras"
    assert calls[-1] == f"lookout run LOOKOUT_DATA_DIR={checkout}/.lookout"
    assert installs(make(checkout, "run")) == [], "installed once"

    dry = subprocess.run(
        ["make", "-n", "-C", str(checkout), f"PYTHON={checkout.parent / 'python3'}", "test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "-e '.[dev]'" in dry, "make test installs the dev extras"
    assert "-m pytest" in dry

    (checkout / ".venv" / ".installed-stamp").touch()  # as make test leaves it
    assert installs(make(checkout, "run")) == []


def test_make_run_keeps_its_data_in_the_checkout_unless_told(checkout: Path) -> None:
    elsewhere = checkout.parent / "elsewhere"
    calls = make(checkout, "run", LOOKOUT_DATA_DIR=str(elsewhere))
    assert calls[-1] == f"lookout run LOOKOUT_DATA_DIR={elsewhere}"
