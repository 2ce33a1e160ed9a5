"""The drift detector yields the CPU to the request path: its nice value goes up at start,
and its checks run in a SCHED_IDLE thread.

os.nice cannot be undone, so each nice case runs in a child process; the idle worker's
thread ends when it is stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.drift_detector.monitor import UseCaseMonitor
from services.drift_detector.priority import in_worker, start_idle_worker, stop_idle_worker
from services.drift_detector.settings import DriftDetectorSettings
from tests.drift_detector.conftest import credit_spec, feature_rows

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import os, sys
from pathlib import Path
from services.drift_detector.priority import lower_priority
print(os.getpriority(os.PRIO_PROCESS, 0), lower_priority(int(sys.argv[1]), Path(sys.argv[2])),
      os.getpriority(os.PRIO_PROCESS, 0))
"""


def _child(increment: int, autogroup: Path, *, own_session: bool) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(increment), str(autogroup)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=own_session,
    )
    return [int(word) for word in done.stdout.split()]


def test_the_default_lowers_the_priority() -> None:
    assert DriftDetectorSettings(home=Path("/tmp")).nice == 10


def test_nice_rises_by_the_increment_and_a_shared_session_is_left_alone(tmp_path: Path) -> None:
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("/autogroup-1 nice 0\n")
    before, returned, after = _child(5, autogroup, own_session=False)
    assert after == min(before + 5, 19) == returned
    assert autogroup.read_text() == "/autogroup-1 nice 0\n"  # the session is the caller's too


def test_a_session_leader_also_lowers_its_autogroup(tmp_path: Path) -> None:
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("/autogroup-1 nice 0\n")
    before, returned, after = _child(5, autogroup, own_session=True)
    assert after == returned == min(before + 5, 19)
    assert autogroup.read_text() == f"{after}\n"


def test_zero_changes_nothing(tmp_path: Path) -> None:
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("/autogroup-1 nice 0\n")
    before, returned, after = _child(0, autogroup, own_session=True)
    assert before == returned == after == os.getpriority(os.PRIO_PROCESS, 0)
    assert autogroup.read_text() == "/autogroup-1 nice 0\n"


def test_the_checks_run_in_an_idle_thread_by_default() -> None:
    assert DriftDetectorSettings(home=Path("/tmp")).idle_checks is True


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE: Linux")
async def test_the_idle_worker_runs_calls_at_sched_idle_and_leaves_the_caller_alone() -> None:
    caller = os.sched_getscheduler(0)
    assert await in_worker(os.sched_getscheduler, 0) == caller  # not started: asyncio's threads
    start_idle_worker()
    try:
        start_idle_worker()  # a second start keeps the one thread
        seen = {await in_worker(lambda: (os.sched_getscheduler(0), threading.get_ident()))
                for _ in range(3)}  # fmt: skip
        assert {policy for policy, _ in seen} == {os.SCHED_IDLE}
        assert len({thread for _, thread in seen}) == 1
        assert os.sched_getscheduler(0) == caller
    finally:
        stop_idle_worker()
    assert await in_worker(os.sched_getscheduler, 0) == caller


async def test_a_monitor_checking_in_the_idle_worker_decides_as_before(tmp_path: Path) -> None:
    spec = credit_spec()
    rows = feature_rows(spec, 2000, drift_at=800)

    async def alerts() -> list[tuple[str, dict[str, tuple[float, bool]]]]:
        monitor = UseCaseMonitor(spec)
        for row in rows:
            await monitor.offer_features(row, tmp_path)
        return [
            (alert.kind, {n: (f.score, f.drifted) for n, f in alert.features.items()})
            for alert in monitor.alerts
        ]

    before = await alerts()
    start_idle_worker()
    try:
        after = await alerts()
    finally:
        stop_idle_worker()
    assert before and after == before


@pytest.mark.parametrize("own_session", [True, False])
def test_the_idle_worker_is_for_a_detector_in_its_own_session(own_session: bool) -> None:
    code = (
        "from services.drift_detector.priority import idle_checks_apply as a; "
        "print(a(True), a(False))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        start_new_session=own_session,
    )  # fmt: skip
    assert done.stdout.split() == [str(own_session), "False"]
