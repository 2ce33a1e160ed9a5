"""Feast's typeguard instrumentation is left out unless DRIFTLINE_FEAST_TYPECHECKS=1, and
Feast's import leaves prometheus_client's metrics in process.

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


METRICS_PROBE = """
import os, services, feast, feast.metrics  # services first, as every driftline process
from services.common.featurestore import open_store
from prometheus_client import Counter, values
Counter("driftline_probe_total", "a probe").inc()
print(values.ValueClass.__name__, sorted(k for k in os.environ if k.startswith("PROMETHEUS")))
print(os.path.isdir(feast.metrics._prometheus_mp_dir))
"""


@pytest.mark.parametrize("inherited", [False, True], ids=["fresh", "inherited"])
def test_feast_leaves_prometheus_metrics_in_process(inherited: bool, tmp_path: Path) -> None:
    """Importing Feast turns on prometheus_client's multiprocess mode (a temporary folder
    in two variables) unless driftline takes it back; a process started by one that
    imported Feast inherits the variables, and drops them too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
    folder = tmp_path / "feast_metrics_parent"
    if inherited:
        folder.mkdir()
        env["PROMETHEUS_MULTIPROCESS_DIR"] = env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    out = subprocess.run(
        [sys.executable, "-c", METRICS_PROBE],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split("\n")
    assert out[0] == "MutexValue []"
    assert out[1] == "False"  # Feast's own folder removed (the inherited one is not Feast's)
    assert list(tmp_path.glob("feast_metrics_parent/*")) == []  # nothing written there
