"""py-spy profiles of each benchmark's processes: ``driftline bench --profile DIR``.

While a benchmark runs, every Python process of it (the bench process, which
runs the in-process baselines and the load tools, and every service it starts)
is sampled by py-spy: raw stacks, non-blocking, so no process is ever paused.
When the benchmark ends, each process's samples are folded into its top frames
by self time and by total time, idle frames left out, and the busiest process
(the most busy samples) goes into the result's ``details.profile``. The raw
files stay in DIR, one per process (``B1-features-1234.txt``), for flame graphs
(``flamegraph.pl`` or speedscope read them).

>>> folded = fold(["a (x.py);b (y.py) 3", "a (x.py);select (selectors.py) 5", "a (x.py) 1"])
>>> folded.samples, folded.busy
(9, 4)
>>> top_frames(folded.self_samples, folded.busy, 1)
[[0.75, 'b (y.py)']]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A leaf frame that is a thread waiting, not working (py-spy's own idle guess misses some).
IDLE_FRAMES = ("select (", "epoll", "poll (", "sleep (", "_wait_for_tstate_lock", "wait (threading")
# Frames every stack of a service has; they say nothing about where the time goes.
FRAME_NOISE = (
    "<module>",
    "_run_module",
    "run (asyncio",
    "run_forever",
    "run_until_complete",
    "_run_once",
    "_run (asyncio",
    "_bootstrap",
    "run (threading",
    "main (",
    "typer/",
    "click/",
    "bench/command.py",
    "bench/runner.py",
)
RATE_HZ = 50
POLL_SECONDS = 0.5
# A process is sampled once it has run this long, so that a profile shows the load and not
# the imports of a service's start; B10, which measures the start, samples from the first.
SETTLE_SECONDS = 10.0
SETTLE_BY_BENCHMARK = {"B10": 0.0}


@dataclass
class Folded:
    """One process's samples, folded by frame."""

    samples: int = 0
    busy: int = 0
    self_samples: Counter[str] = field(default_factory=Counter)
    total_samples: Counter[str] = field(default_factory=Counter)


def short_frame(frame: str) -> str:
    """``f (/long/site-packages/pkg/mod.py:12)`` as ``f (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where}" if where else name


def fold(lines: Iterable[str]) -> Folded:
    """Fold py-spy's raw lines (``frame;frame;...;leaf COUNT``), root first."""
    folded = Folded()
    for line in lines:
        stack, _, count = line.strip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        folded.samples += samples
        frames = [short_frame(frame) for frame in stack.split(";")]
        if any(word in frames[-1] for word in IDLE_FRAMES):
            continue
        folded.busy += samples
        folded.self_samples[frames[-1]] += samples
        for frame in set(frames):
            if not any(word in frame for word in FRAME_NOISE):
                folded.total_samples[frame] += samples
    return folded


def top_frames(counts: Counter[str], busy: int, n: int = 5) -> list[list[Any]]:
    """The ``n`` frames with the most samples, each as [share of busy samples, frame]."""
    return [[round(c / max(busy, 1), 3), frame] for frame, c in counts.most_common(n)]


def label_of(cmdline: list[str], pid: int) -> str:
    """A process's short name: the service of ``-m services.<name>``, else its script."""
    if pid == os.getpid():
        return "bench"
    for index, word in enumerate(cmdline[:-1]):
        if word == "-m":
            return cmdline[index + 1].removeprefix("services.").replace(".", "-")
    scripts = [Path(word).stem for word in cmdline[1:] if word.endswith(".py")]
    return scripts[0] if scripts else Path(cmdline[0]).name if cmdline else str(pid)


@dataclass
class Watch:
    """py-spy recorders attached to one benchmark's Python processes."""

    bench_id: str
    directory: Path
    rate: int = RATE_HZ
    settle: float = SETTLE_SECONDS
    recorders: dict[int, tuple[str, Path, subprocess.Popen[bytes]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def attach_new(self) -> None:
        import psutil

        me = psutil.Process()
        now = time.time()
        for process in [me, *me.children(recursive=True)]:
            if process.pid in self.recorders:
                continue
            try:
                cmdline = process.cmdline()
                young = process.pid != me.pid and now - process.create_time() < self.settle
            except psutil.Error:
                continue
            if young:  # still starting: its imports are not the benchmark's load
                continue
            if not cmdline or "python" not in Path(cmdline[0]).name or "py-spy" in cmdline[0]:
                continue
            label = label_of(cmdline, process.pid)
            out = self.directory / f"{self.bench_id}-{label}-{process.pid}.txt"
            command = [py_spy(), "record", "--pid", str(process.pid), "--rate", str(self.rate)]
            command += ["--nonblocking", "--function", "--format", "raw", "--output", str(out)]
            recorder = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.recorders[process.pid] = (label, out, recorder)

    def follow(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            with contextlib.suppress(Exception):  # a process that left mid-scan: next scan
                self.attach_new()

    def finish(self) -> dict[str, Any]:
        """Stop the recorders (SIGINT makes py-spy write its file); the busiest's top frames."""
        for _, _, recorder in self.recorders.values():
            with contextlib.suppress(ProcessLookupError):
                recorder.send_signal(signal.SIGINT)
        by_process: dict[str, Folded] = {}
        for pid, (label, out, recorder) in self.recorders.items():
            try:
                recorder.wait(timeout=20)
            except subprocess.TimeoutExpired:
                recorder.kill()
            if out.exists():
                by_process[f"{label}-{pid}"] = fold(out.read_text(errors="replace").splitlines())
        return summary(by_process, self.rate)


def summary(by_process: dict[str, Folded], rate: int) -> dict[str, Any]:
    """The busiest process's top five frames, and every process's busy seconds."""
    if not by_process:
        return {}
    name, busiest = max(by_process.items(), key=lambda item: item[1].busy)
    return {
        "busiest": name,
        "busy_seconds": {n: round(f.busy / rate, 1) for n, f in by_process.items()},
        "top_self": top_frames(busiest.self_samples, busiest.busy),
        "top_total": top_frames(busiest.total_samples, busiest.busy),
    }


def py_spy() -> str:
    """The py-spy beside this Python (the project's venv), else one on PATH."""
    import sys

    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return found


@contextlib.contextmanager
def watching(
    bench_id: str, directory: Path, settle: float | None = None
) -> Iterator[dict[str, Any]]:
    """Profile ``bench_id``'s processes while the block runs; fill the yielded dict after.

    A process is sampled from ``settle`` seconds after it started (by default
    :data:`SETTLE_SECONDS`, or the benchmark's own in :data:`SETTLE_BY_BENCHMARK`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if settle is None:
        settle = SETTLE_BY_BENCHMARK.get(bench_id, SETTLE_SECONDS)
    watch = Watch(bench_id, directory, settle=settle)
    watch.attach_new()
    follower = threading.Thread(target=watch.follow, name=f"profile-{bench_id}", daemon=True)
    follower.start()
    found: dict[str, Any] = {}
    try:
        yield found
    finally:
        watch.stop.set()
        follower.join()
        found.update(watch.finish())


def markdown(results: Iterable[Any]) -> list[str]:
    """The report's profile section: each benchmark's busiest process and its top frames."""
    lines: list[str] = []
    for result in results:
        profile = result.details.get("profile") or {}
        if not profile:
            continue
        lines += ["", f"### {result.id}: busiest process `{profile['busiest']}`", ""]
        busy = ", ".join(f"{n} {s:g} s" for n, s in sorted(profile["busy_seconds"].items()))
        lines += [f"Busy time sampled: {busy}.", "", "| self | frame | total | frame |"]
        lines.append("|---|---|---|---|")
        for own, total in zip(profile["top_self"], profile["top_total"], strict=False):
            lines.append(f"| {own[0]:.1%} | `{own[1]}` | {total[0]:.1%} | `{total[1]}` |")
    return ["", "## Profiles (py-spy, busiest process)", *lines] if lines else []
