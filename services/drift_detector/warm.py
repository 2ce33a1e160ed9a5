"""evidently's fixed costs paid at start, not in the first check of the closed loop.

evidently is imported on first use (checks.py), and its first report imports
more (the presets, the HTML renderer): seconds on a quiet machine, tens on a
busy one, and all of it before the first alert could be published (B8's
alert step). :func:`start_warm_up` runs one tiny check and one tiny report in
a background thread at start, so the first real window finds them loaded.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.usecase import DriftSpec
from services.drift_detector import reports
from services.drift_detector.checks import check_data, profile_reference

logger = logging.getLogger(__name__)


def warm_up(nice: int = 0) -> None:
    """Profile, check and report on a one-column frame (evidently's tests and renderer).

    The checks' imports (about 5 s of CPU, nearly all of it) run at the calling thread's
    priority; the thread then raises its own nice value by ``nice`` (Linux: a thread's
    own) for the report's part, the rest of the process's low priority.
    """
    started = time.monotonic()
    frame = pd.DataFrame({"x": np.linspace(0.0, 1.0, 50)})
    spec = DriftSpec(min_rows=10)
    profile = profile_reference(frame, ["x"], spec)
    check_data(profile, frame, spec)
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)
    with tempfile.TemporaryDirectory(prefix="driftline-warmup-") as scratch:
        reports.save_drift_report(Path(scratch) / "report.html", profile, frame, frame, 0.5)
    logger.info("evidently warmed up in %.1f s", time.monotonic() - started)


def start_warm_up(nice: int = 0) -> threading.Thread:
    """:func:`warm_up` in a daemon thread; a failure is logged, the first check meets it again.

    Started before the service lowers its priority (``__main__``), the thread imports
    evidently at the start's priority: at the lowered one, on a loaded machine, the import
    took 84 to 123 s, and the first reference and window waited for it (Python's import
    lock), so the first alert came up to 16 s after B8's drift instead of 2.5 s. Where
    the detector leads its own session (``driftline up``), its session's autogroup nice is
    lowered for every thread, so other sessions still come first.
    """

    def run() -> None:
        try:
            warm_up(nice)
        except Exception:
            logger.exception("evidently warm-up failed")

    thread = threading.Thread(target=run, name="warmup", daemon=True)
    thread.start()
    return thread
