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

A nice value alone still let a looping check cost serving up to a tenth of its
requests (B7: kept 0.84 to 1.01), and a request thread that wakes on a core where
a check runs may wait out the slice the scheduler grants the running thread
(EEVDF's run-to-parity). So where the detector leads its own session, its checks
and reports run in one worker thread of Linux's ``SCHED_IDLE`` class
(``DRIFTLINE_IDLE_CHECKS``, on by default, :func:`start_idle_worker`): a normal
thread that wakes takes the core from it at once, and a core that runs only it
counts as idle where a waking thread is placed. The session's autogroup still
gets its share, and the worker has it while the detector's other threads wait
for it, which they do during a check. Beside a loaded inference service, B7's
check loop in a session of its own took 0.19 and 0.14 CPU-seconds a second at
SCHED_IDLE against 0.40 and 0.18 at nice 10 (two runs, on a shared machine).

Not in a shared session (a bench's, a shell's): there the worker ranks below every
busy thread of the session's other processes. With two busy processes beside it a
1,000-by-500-row check took 375 ms of wall time instead of 36 (p99 3.1 s instead of
0.4), and the event loop waited up to 1.4 s for the GIL the starved worker held.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")

Result = TypeVar("Result")

_idle_worker: ThreadPoolExecutor | None = None


def lower_priority(increment: int, autogroup: Path = AUTOGROUP) -> int:
    """Raise this process's nice value by ``increment``; return the nice value it now has.

    0 changes nothing. Where the platform has no nice value, nothing changes either.
    """
    if not hasattr(os, "nice"):
        return 0
    if increment <= 0:
        return os.nice(0)
    value = os.nice(increment)
    if leads_session() and autogroup.exists():
        try:
            autogroup.write_text(f"{value}\n")
        except OSError as exc:  # a kernel without autogroup, or a read-only /proc
            logger.info("autogroup nice not set (%s): nice %d applies in the session", exc, value)
    logger.info("drift detector priority lowered: nice %d", value)
    return value


def leads_session() -> bool:
    """Whether this process leads its own session (``driftline up`` starts each service so)."""
    return hasattr(os, "getsid") and os.getsid(0) == os.getpid()


def idle_checks_apply(enabled: bool) -> bool:
    """Whether the checks go to the idle worker: enabled, and the detector leads its session."""
    return enabled and leads_session()


def idle_thread() -> bool:
    """Move the calling thread (Linux: a thread's own policy) into ``SCHED_IDLE``.

    True when it is there now; False where the platform has no such class or
    refuses it (the thread keeps its nice value). There is no way back for an
    unprivileged thread, so only threads that do nothing else are moved.
    """
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        logger.info("SCHED_IDLE not set (%s): the checks run at the nice value", exc)
        return False
    return True


def start_idle_worker() -> None:
    """From now on :func:`in_worker` runs its calls in one thread of ``SCHED_IDLE``.

    One thread, so checks and reports run one after another, as the monitor
    awaits them. Calling it again keeps the thread that runs.
    """
    global _idle_worker
    if _idle_worker is None:
        _idle_worker = ThreadPoolExecutor(1, "idle-checks", initializer=idle_thread)


def stop_idle_worker() -> None:
    """Back to :func:`asyncio.to_thread`; the worker's thread ends after its call."""
    global _idle_worker
    worker, _idle_worker = _idle_worker, None
    if worker is not None:
        worker.shutdown(wait=False)


async def in_worker(function: Callable[..., Result], *args: object) -> Result:
    """``function(*args)`` in the idle worker if started, else in asyncio's default threads."""
    worker = _idle_worker
    if worker is None:
        return await asyncio.to_thread(function, *args)
    return await asyncio.get_running_loop().run_in_executor(worker, partial(function, *args))
