"""The detector's warm-up loads evidently's tests and report renderer, and leaves no file."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

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
