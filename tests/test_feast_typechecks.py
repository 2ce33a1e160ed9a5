"""Feast's typeguard instrumentation is left out unless DRIFTLINE_FEAST_TYPECHECKS=1.

Each case is a fresh interpreter: the choice is made once, before Feast is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import services, feast, typeguard
from services.common.featurestore import repo_config
print("typeguard" in feast.FeatureView.__init__.__code__.co_names)

@typeguard.typechecked
def mine(x: int) -> int:
    return x

try:
    mine("a")
except typeguard.TypeCheckError:
    print("others checked")
"""


@pytest.mark.parametrize(("setting", "instrumented"), [(None, "False"), ("1", "True")])
def test_feast_is_instrumented_only_when_asked_and_other_code_always(
    setting: str | None, instrumented: str, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.py"  # typeguard instruments from source: a file, not -c
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "DRIFTLINE_FEAST_TYPECHECKS"}
    if setting is not None:
        env["DRIFTLINE_FEAST_TYPECHECKS"] = setting
    out = subprocess.run(
        [sys.executable, str(probe)],
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [instrumented, "others", "checked"]
