"""The drift detector's CPU priority: below the request path's, so checks never starve it.

A check is seconds of numpy and scipy work (evidently's tests over every
feature of a window). On a small machine it would take a core from the
inference service while requests wait (B7). At start the detector raises its
own nice value by ``DRIFTLINE_NICE`` (10 by default): it still gets the whole
of an idle core, and about a tenth of a busy one.

Linux's autogroup scheduling (on where the CPU cgroup is the root one) shares
the CPU between sessions first and by nice value only inside a session, and
``driftline up`` starts each service in a session of its own. So a detector
that leads its own session also raises its session's autogroup nice value;
one that shares a session (a test, a bench) leaves the others' alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(increment: int, autogroup: Path = AUTOGROUP) -> int:
    """Raise this process's nice value by ``increment``; return the nice value it now has.

    0 changes nothing. Where the platform has no nice value, nothing changes either.
    """
    if not hasattr(os, "nice"):
        return 0
    if increment <= 0:
        return os.nice(0)
    value = os.nice(increment)
    if os.getsid(0) == os.getpid() and autogroup.exists():
        try:
            autogroup.write_text(f"{value}\n")
        except OSError as exc:  # a kernel without autogroup, or a read-only /proc
            logger.info("autogroup nice not set (%s): nice %d applies in the session", exc, value)
    logger.info("drift detector priority lowered: nice %d", value)
    return value
