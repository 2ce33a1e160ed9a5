"""``feature_repo/`` is a real Feast repo: the feast command line works in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.usecase import load_usecases

ROOT = Path(__file__).resolve().parent.parent
FEAST = Path(sys.executable).with_name("feast")

pytestmark = pytest.mark.slow


def feast(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRIFTLINE_HOME": str(home)}
    env.pop("DRIFTLINE_USECASES_DIR", None)
    return subprocess.run(
        [str(FEAST), *args],
        cwd=ROOT / "feature_repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_feast_apply_registers_a_view_per_use_case(tmp_path: Path) -> None:
    applied = feast(tmp_path, "apply")
    assert applied.returncode == 0, applied.stderr[-2000:]
    listed = feast(tmp_path, "feature-views", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    for name in load_usecases(ROOT / "usecases"):
        assert f"{name}_features" in listed.stdout
    assert (tmp_path / "feast" / "registry.db").exists()
