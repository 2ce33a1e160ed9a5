"""The drift detector yields the CPU to the request path: its nice value goes up at start.

os.nice cannot be undone, so each case runs in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.drift_detector.settings import DriftDetectorSettings

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
