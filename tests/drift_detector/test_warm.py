"""The detector's warm-up loads evidently's tests and report renderer, and leaves no file."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from services.drift_detector.warm import start_warm_up, warm_up


def test_the_warm_up_loads_evidently_and_cleans_up() -> None:
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("driftline-warmup-*"))
    warm_up()  # raises if evidently's check or report cannot run
    thread = start_warm_up()
    thread.join(300)
    assert not thread.is_alive()
    assert "evidently.presets" in sys.modules
    assert "evidently.legacy.calculations.stattests.registry" in sys.modules
    assert set(scratch.glob("driftline-warmup-*")) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice: Linux")
def test_the_warm_up_lowers_only_its_own_threads_priority_after_the_imports() -> None:
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def run() -> None:
        warm_up(nice=3)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(300)
    assert seen == [min(main + 3, 19)]  # the report's part ran lowered
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main  # not the rest
