"""The prediction log: every answer becomes a ``Prediction`` event on ``<uc>.predictions``.

At least once, through a write-ahead journal. Before an answer returns, each
prediction is appended as one JSON line to a segment under
``<DRIFTLINE_HOME>/inference/predictions/`` and queued in memory; a background
task sends the queue in batches and, once the broker acknowledges a batch,
records how far each segment is shipped (``<segment>.shipped``, a byte offset
replaced atomically). A segment rotates at ``segment_bytes`` and is deleted
once all of it is acknowledged. At start, before the service answers, earlier
runs' segments are sent again from their shipped offset; a torn last line (a
kill mid-write) is skipped with a warning. Records keep their ``event_id`` and
``occurred_at``, so a resent event is the same event; consumers deduplicate
by ``prediction_id``.

It survives a kill of the process (SIGKILL, the OOM killer), not a crash of
the machine: the append is one ``write()`` with no ``fsync``, so the line is
in the kernel's page cache, which outlives the process but not a power loss.
Each process holds an exclusive ``flock`` on its segments until it deletes
them, so replicas sharing a home never resend a live process's journal.

Bounded: past ``capacity`` unacknowledged predictions new ones are dropped
and counted (``driftline_inference_prediction_log_total``). Unacknowledged
sends are retried with backoff; a clean stop sends what is pending within
``stop_seconds`` and leaves the rest in the journal for the next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas import topics
from schemas.events import Prediction, new_id
from services.inference.metrics import PREDICTION_LOG, PREDICTION_LOG_PENDING

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
SHIPPED_SUFFIX = ".shipped"

TopicsReady = Callable[[list[str]], Awaitable[object]]
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps(..., separators=) made once


def shipped_path(segment: Path) -> Path:
    """The sidecar that says how many bytes of ``segment`` the broker has acknowledged."""
    return segment.with_name(segment.name + SHIPPED_SUFFIX)


def read_shipped(segment: Path) -> int:
    """The shipped offset of ``segment`` (0 when no sidecar or an unreadable one)."""
    try:
        return max(0, int(shipped_path(segment).read_text()))
    except (OSError, ValueError):
        return 0


def write_shipped(segment: Path, offset: int) -> None:
    """Record the shipped offset: a temporary file renamed over the sidecar (no fsync)."""
    target = shipped_path(segment)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(str(offset))
    os.replace(temporary, target)


class Line(NamedTuple):
    record: dict[str, Any]
    end: int  # the byte offset just past this line


def parse_lines(data: bytes, start: int, source: str) -> list[Line]:
    """The records of a journal read from byte ``start``; bad and torn lines are skipped.

    >>> parse_lines(b'{"a": 1}\\n{"a": 2}\\n{"a', 0, "doctest")
    [Line(record={'a': 1}, end=9), Line(record={'a': 2}, end=18)]
    """
    lines: list[Line] = []
    *complete, torn = data.split(b"\n")
    position = start
    for raw in complete:
        offset, position = position, position + len(raw) + 1
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            lines.append(Line(record, position))
        else:
            logger.warning("unreadable journal line skipped segment=%s offset=%d", source, offset)
    if torn:
        logger.warning("torn last journal line skipped segment=%s offset=%d", source, position)
    return lines


def delete_segment(segment: Path) -> None:
    """Delete a journal segment and its sidecar.

    The segment first: a kill in between leaves a sidecar alone, which the next
    start removes, never a segment without its offset.
    """
    segment.unlink(missing_ok=True)
    shipped_path(segment).unlink(missing_ok=True)


class Segment:
    """One journal file this process appends to, locked from creation to deletion."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("xb", buffering=0)  # each write() goes straight to the OS
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.size = 0
        self.pending = 0  # lines appended and not yet acknowledged
        self.rotated = False

    def append(self, line: bytes) -> int:
        """Write ``line`` to the OS; return the offset just past it."""
        written = 0
        while written < len(line):
            written += self.file.write(line[written:]) or 0
        self.size += written
        return self.size

    def delete(self) -> None:
        delete_segment(self.path)
        self.file.close()


class Pending(NamedTuple):
    record: dict[str, Any]
    segment: Segment | None  # None: the journal could not be written
    end: int


@dataclass(eq=False)
class PredictionLog:
    """Journals each prediction on the request path and ships the journal in batches."""

    producer: AIOKafkaProducer
    directory: Path
    _: KW_ONLY
    batch_size: int = 500
    linger_seconds: float = 0.02
    capacity: int = 100_000
    segment_bytes: int = 8 * 1024 * 1024
    stop_seconds: float = 10.0
    topics_ready: TopicsReady | None = None
    sent: int = field(default=0, init=False)
    dropped: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._run_name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        self._sequence = 0
        self._segment: Segment | None = None
        self._segments: list[Segment] = []  # this run's, oldest first, until deleted
        self._queue: deque[Pending] = deque()
        self._unacknowledged = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- the request path ------------------------------------------------------------

    def submit(self, prediction: dict[str, Any]) -> None:
        """Journal one prediction's fields (``Prediction`` keyword arguments) and queue it;
        return once the line is written to the OS, never waiting for the broker.
        """
        if self._unacknowledged >= self.capacity:
            self.dropped += 1
            PREDICTION_LOG.labels("dropped").inc()
            return
        record = {"event_id": new_id(), "occurred_at": time.time(), **prediction}  # Unix seconds
        try:
            line = (_ENCODER.encode(record) + "\n").encode()
        except (TypeError, ValueError) as exc:
            PREDICTION_LOG.labels("failed").inc()
            logger.warning("prediction not logged reason=%s", exc)
            return
        segment, end = self._append(line)
        self._queue.append(Pending(record, segment, end))
        self._unacknowledged += 1
        PREDICTION_LOG_PENDING.set(self._unacknowledged)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _append(self, line: bytes) -> tuple[Segment | None, int]:
        try:
            segment = self._segment
            if segment is None or segment.size >= self.segment_bytes:
                segment = self._rotate()
            end = segment.append(line)
        except OSError:
            # A full disk must not fail the answer: the prediction is sent from memory.
            PREDICTION_LOG.labels("unjournaled").inc()
            logger.exception("prediction journal not written directory=%s", self.directory)
            if self._segment is not None:
                self._segment.size = self.segment_bytes  # a torn line ends it: rotate
            return None, 0
        segment.pending += 1
        return segment, end

    def _rotate(self) -> Segment:
        if self._segment is not None:
            self._segment.rotated = True
            if self._segment.pending == 0:
                self._forget(self._segment)
        self._sequence += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self._run_name}-{self._sequence:05d}{SEGMENT_SUFFIX}"
        self._segment = Segment(self.directory / name)
        self._segments.append(self._segment)
        return self._segment

    def _forget(self, segment: Segment) -> None:
        segment.delete()
        self._segments.remove(segment)
        if segment is self._segment:
            self._segment = None

    # ---- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Send what earlier runs journaled and did not ship, then start the sender."""
        await self.replay()
        self._task = asyncio.create_task(self._run(), name="prediction-log")

    async def stop(self) -> None:
        """Send what is pending (within ``stop_seconds``), then end the background task.

        What is not acknowledged by then stays in the journal for the next start.
        """
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.stop_seconds)
            except TimeoutError:
                left = self._unacknowledged
                logger.error("prediction log not flushed; left for the next start count=%d", left)
            self._task = None
        for segment in list(self._segments):
            if segment.pending == 0:
                self._forget(segment)
            else:
                segment.file.close()  # releases the lock: the next start resends it
        self._segments.clear()
        self._segment = None

    # ---- shipping --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if len(self._queue) < self.batch_size and not self._stopping:
                await asyncio.sleep(self.linger_seconds)  # let a batch fill
            while self._queue:
                size = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                self.sent += await self._ship([p.record for p in batch], "sent")
                self._acknowledged(batch)
            if self._stopping:
                return

    def _acknowledged(self, batch: Sequence[Pending]) -> None:
        ends: dict[Segment, int] = {}
        for pending in batch:
            if pending.segment is not None:
                pending.segment.pending -= 1
                ends[pending.segment] = pending.end
        self._unacknowledged -= len(batch)
        PREDICTION_LOG_PENDING.set(self._unacknowledged)
        for segment, end in ends.items():
            if segment.rotated and segment.pending == 0:
                self._forget(segment)
                continue
            try:
                write_shipped(segment.path, end)
            except OSError:
                logger.exception("shipped offset not recorded segment=%s", segment.path)

    async def _ship(self, records: Sequence[dict[str, Any]], outcome: str) -> int:
        """Send ``records`` until the broker has acknowledged each; return how many were sent.

        A record that is not a valid ``Prediction`` is counted ``failed`` and skipped.
        """
        messages: list[tuple[str, bytes]] = []
        for record in records:
            try:
                event = Prediction(**record)
            except ValidationError as exc:
                PREDICTION_LOG.labels("failed").inc()
                logger.warning("prediction not logged reason=%s", exc.errors()[0]["msg"])
                continue
            messages.append((topics.predictions(event.usecase), event.model_dump_json().encode()))
        delay = 0.1
        waiting = await self._send(messages)
        while waiting:
            PREDICTION_LOG.labels("retried").inc(len(waiting))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            waiting = await self._send(waiting)
        PREDICTION_LOG.labels(outcome).inc(len(messages))
        return len(messages)

    async def _send(self, messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Send each message once; return those the broker did not acknowledge."""
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        failed: list[int] = []
        error: BaseException | None = None
        for index, (topic, value) in enumerate(messages):
            try:
                futures.append((index, await self.producer.send(topic, value)))
            except Exception as exc:  # no metadata for the topic, buffer timeout
                failed.append(index)
                error = exc
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (index, _), result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(index)
                error = result
        if failed:
            logger.error("predictions not acknowledged count=%d error=%r", len(failed), error)
        return [messages[i] for i in sorted(failed)]

    # ---- earlier runs ----------------------------------------------------------------

    async def replay(self) -> int:
        """Send the unshipped predictions of every earlier run's segment; return how many.

        A segment locked by a live process (a replica sharing this home) is left to it.
        """
        if not self.directory.is_dir():
            return 0
        count = 0
        for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
            claimed = _claim(path)
            if claimed is not None:
                with claimed:
                    count += await self._replay_segment(path, claimed)
        for sidecar in self.directory.glob(f"*{SEGMENT_SUFFIX}{SHIPPED_SUFFIX}*"):
            segment = sidecar.with_name(sidecar.name.split(SHIPPED_SUFFIX)[0])
            if not segment.exists():
                sidecar.unlink(missing_ok=True)
        if count:
            logger.info("predictions of earlier runs sent again count=%d", count)
        return count

    async def _replay_segment(self, path: Path, claimed: BinaryIO) -> int:
        start = read_shipped(path)
        claimed.seek(start)
        lines = parse_lines(claimed.read(), start, path.name)
        usecases = {line.record.get("usecase") for line in lines}
        names = sorted(topics.predictions(u) for u in usecases if isinstance(u, str) and u)
        if names and self.topics_ready is not None:
            await self.topics_ready(names)  # a use case no longer served, a broker restarted
        count = 0
        for first in range(0, len(lines), self.batch_size):
            chunk = lines[first : first + self.batch_size]
            count += await self._ship([line.record for line in chunk], "replayed")
            write_shipped(path, chunk[-1].end)
        delete_segment(path)
        return count


def _claim(path: Path) -> BinaryIO | None:
    """``path`` open and exclusively locked; None if a live process holds it or it is gone."""
    try:
        claimed = path.open("rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(claimed.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(claimed.fileno()).st_ino == os.stat(path).st_ino:  # not deleted meanwhile
            return claimed
    except (BlockingIOError, FileNotFoundError):
        pass
    claimed.close()
    return None
