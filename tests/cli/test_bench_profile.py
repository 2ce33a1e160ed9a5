"""``driftline bench --profile``: py-spy samples the processes; the report names the busiest.

A real py-spy attaches to a real child process that burns CPU in a function
with a known name; nothing here asserts a time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.profile import py_spy, watching
from bench.report import markdown
from bench.runner import BenchContext, BenchmarkSpec, Result, Target, run_benchmarks

SPINNER = """
import time
def spin_in_a_known_place():
    ends = time.monotonic() + 6
    while time.monotonic() < ends:
        sum(i * i for i in range(500))
spin_in_a_known_place()
"""


def have_py_spy() -> bool:
    try:
        py_spy()
    except RuntimeError:
        return False
    return True


pytestmark = pytest.mark.skipif(not have_py_spy(), reason="py-spy is not installed")


def spinning_benchmark(context: BenchContext) -> Result:
    child = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        time.sleep(4)  # long enough for the watcher's scan to attach py-spy and sample
    finally:
        child.wait(timeout=30)
    return Result("BP", "spin", "measured", "reported", figure=1.0)


def run_spinning(id: str, tmp_path: Path, folder: Path, settle: float) -> Result:
    """Run the spinning benchmark as ``id`` under a watch that writes its samples to ``folder``."""
    spec = BenchmarkSpec(id, "spin", Target("reported", []), spinning_benchmark)
    context = BenchContext(quick=True, repetitions=1, workdir=tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules["bench.runner"].REGISTRY, id, spec)
        [result] = list(
            run_benchmarks([id], context, watch=lambda i: watching(i, folder, settle=settle))
        )
    return result


def test_the_busiest_process_and_its_hot_function_reach_the_report(tmp_path: Path) -> None:
    result = run_spinning("BP", tmp_path, tmp_path / "prof", settle=0)
    profile = result.details["profile"]
    assert not profile["busiest"].startswith("bench"), profile
    frames = [frame for _, frame in profile["top_self"]]
    assert any("spin_in_a_known_place" in frame or "<genexpr>" in frame for frame in frames)
    assert sum(share for share, _ in profile["top_self"]) <= 1.0
    assert list((tmp_path / "prof").glob("BP-*.txt")), "the raw files stay for flame graphs"
    report = {
        "machine": {"cores": 2, "cpu_model": "x", "memory_gb": 1},
        "quick": True,
        "repetitions": 1,
        "date": "d",
        "git_commit": "c",
    }
    text = markdown(report, [result])
    assert "## Profiles (py-spy, busiest process)" in text
    assert f"busiest process `{profile['busiest']}`" in text


def test_a_process_is_sampled_only_once_it_has_settled(tmp_path: Path) -> None:
    """A child younger than ``settle`` is still starting: no recorder attaches to it."""
    result = run_spinning("BS", tmp_path, tmp_path / "p", settle=60)
    files = [path.name for path in (tmp_path / "p").glob("BS-*.txt")]
    assert files and all(name.startswith("BS-bench-") for name in files), files
    assert result.details["profile"]["busiest"].startswith("bench")


def test_without_a_watch_no_profile_is_added(tmp_path: Path) -> None:
    spec = BenchmarkSpec(
        "BQ",
        "plain",
        Target("reported", []),
        lambda c: Result("BQ", "plain", "measured", "reported"),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules["bench.runner"].REGISTRY, "BQ", spec)
        [result] = list(
            run_benchmarks(["BQ"], BenchContext(quick=True, repetitions=1, workdir=tmp_path))
        )
    assert "profile" not in result.details
