"""evidently's fixed costs paid at start, not in the first check of the closed loop.

evidently is imported on first use (checks.py), and its first report imports
more (the presets, the HTML renderer): seconds on a quiet machine, tens on a
busy one, and all of it before the first alert could be published (B8's
alert step). :func:`start_warm_up` runs one tiny check and one tiny report in
a background thread at start, so the first real window finds them loaded.
"""

from __future__ import annotations

import logging
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


def warm_up() -> None:
    """Profile, check and report on a one-column frame (evidently's tests and renderer)."""
    started = time.monotonic()
    frame = pd.DataFrame({"x": np.linspace(0.0, 1.0, 50)})
    spec = DriftSpec(min_rows=10)
    profile = profile_reference(frame, ["x"], spec)
    check_data(profile, frame, spec)
    with tempfile.TemporaryDirectory(prefix="driftline-warmup-") as scratch:
        reports.save_drift_report(Path(scratch) / "report.html", profile, frame, frame, 0.5)
    logger.info("evidently warmed up in %.1f s", time.monotonic() - started)


def start_warm_up() -> threading.Thread:
    """:func:`warm_up` in a daemon thread; a failure is logged, the first check meets it again."""

    def run() -> None:
        try:
            warm_up()
        except Exception:
            logger.exception("evidently warm-up failed")

    thread = threading.Thread(target=run, name="warmup", daemon=True)
    thread.start()
    return thread
