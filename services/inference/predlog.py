"""The prediction log: every answer becomes a ``Prediction`` event on ``<uc>.predictions``.

At least once, through a write-ahead journal. Before an answer returns, each
prediction is appended as one JSON line to a segment under
``<DRIFTLINE_HOME>/inference/predictions/`` and queued in memory; a background
task sends the queue in batches and, once the broker acknowledges a batch,
records how far each segment is shipped (``<segment>.shipped``, a byte offset
overwritten in place, whole). A segment rotates at ``segment_bytes`` and is deleted
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
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import msgspec
from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter, ValidationError

from schemas import topics
from schemas.events import Prediction, utcnow
from services.inference.ids import new_id
from services.inference.journal import (
    SEGMENT_SUFFIX,
    SHIPPED_SUFFIX,
    Segment,
    claim,
    delete_segment,
    event_json,
    event_line,
    parse_lines,
    read_shipped,
    write_shipped,
)
from services.inference.metrics import PREDICTION_LOG, PREDICTION_LOG_PENDING

logger = logging.getLogger(__name__)

TopicsReady = Callable[[list[str]], Awaitable[object]]
_UNENCODABLE = (TypeError, ValueError, msgspec.EncodeError)
_EVENTS = TypeAdapter(list[Prediction])  # a batch validated in one call


class Pending(NamedTuple):
    topic: str
    value: bytes  # the event's JSON, its journal line without the newline
    segment: Segment | None  # None: the journal could not be written
    end: int


@dataclass(eq=False)
class PredictionLog:
    """Journals each prediction on the request path and ships the journal in batches."""

    producer: AIOKafkaProducer
    directory: Path
    _: KW_ONLY
    batch_size: int = 500
    linger_seconds: float = 0.1
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
        self._turn = 0  # the partition the next batch goes to, in turn
        self._topics: dict[Any, str] = {}  # each use case's topic, once a name
        # a Prediction's fields in the model's order: the envelope, then the service's
        self._envelope = {"event_id": "", "event_type": "prediction", "schema_version": 1,
                          "occurred_at": None}  # fmt: skip

    # ---- the request path ------------------------------------------------------------

    def submit(self, prediction: dict[str, Any]) -> None:
        """Journal one prediction's fields (``Prediction`` keyword arguments) and queue it;
        return once the line is written to the OS, never waiting for the broker.
        """
        self.submit_many([prediction])

    def submit_many(self, predictions: Sequence[dict[str, Any]]) -> None:
        """:meth:`submit` each of ``predictions``, their lines in one ``write()``.

        A line is the event's own JSON (:func:`event_line`), so shipping sends it as it is.
        """
        room = self.capacity - self._unacknowledged
        if len(predictions) > room:
            dropped = len(predictions) - max(room, 0)
            self.dropped += dropped
            PREDICTION_LOG.labels("dropped").inc(dropped)
            predictions = predictions[: max(room, 0)]
        now = utcnow()
        values: list[bytes] = []
        topic_names: list[str] = []
        for prediction in predictions:
            try:
                value = event_line(
                    {**self._envelope, "event_id": new_id(), "occurred_at": now, **prediction}
                )
            except (ValidationError, *_UNENCODABLE) as exc:
                PREDICTION_LOG.labels("failed").inc()
                logger.warning("prediction not logged reason=%s", _reason(exc))
                continue
            values.append(value)
            topic_names.append(self._topic(prediction.get("usecase")))
        if not values:
            return
        queue = self._queue
        lines = values[0] + b"\n" if len(values) == 1 else b"\n".join(values) + b"\n"
        segment, end = self._append(lines, len(values))
        if segment is None:
            queue.extend(Pending(t, v, None, 0) for t, v in zip(topic_names, values, strict=True))
        elif len(values) == 1:  # a request's one answer: its line, its end
            queue.append(Pending(topic_names[0], values[0], segment, end))
        else:  # each line's own end: an acknowledged prefix records a shipped offset
            ends = [end]
            for value in reversed(values[1:]):
                ends.append(ends[-1] - len(value) - 1)
            ends.reverse()
            queue.extend(
                Pending(t, v, segment, e) for t, v, e in zip(topic_names, values, ends, strict=True)
            )
        self._unacknowledged += len(values)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _topic(self, usecase: Any) -> str:
        name = self._topics.get(usecase)
        if name is None:
            name = self._topics[usecase] = topics.predictions(usecase)
        return name

    def _append(self, lines: bytes, count: int = 1) -> tuple[Segment | None, int]:
        try:
            segment = self._segment
            if segment is None or segment.size >= self.segment_bytes:
                segment = self._rotate()
            end = segment.append(lines)
        except OSError:
            # A full disk must not fail the answer: the prediction is sent from memory.
            PREDICTION_LOG.labels("unjournaled").inc()
            logger.exception("prediction journal not written directory=%s", self.directory)
            if self._segment is not None:
                self._segment.size = self.segment_bytes  # a torn line ends it: rotate
            return None, 0
        segment.pending += count
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
                segment.close()  # releases the lock: the next start resends it
        self._segments.clear()
        self._segment = None

    # ---- shipping --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                # Let a batch fill, also after an acknowledgement: the answers that came
                # in while it was awaited would otherwise go at once, a few a request.
                if len(self._queue) < self.batch_size and not self._stopping:
                    await asyncio.sleep(self.linger_seconds)
                size = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                PREDICTION_LOG_PENDING.set(self._unacknowledged)
                self.sent += await self._deliver([(p.topic, p.value) for p in batch], "sent")
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
                segment.record_shipped(end)
            except OSError:
                logger.exception("shipped offset not recorded segment=%s", segment.path)

    async def _ship(self, records: Sequence[dict[str, Any]], outcome: str) -> int:
        """Send journaled ``records`` (an earlier run's lines, of this release's form or an
        older one) as ``Prediction`` events; return how many were sent.

        A record that is not a valid ``Prediction`` is counted ``failed`` and skipped.
        """
        messages: list[tuple[str, bytes]] = []
        try:
            events = _EVENTS.validate_python(records)  # the common case: all valid, one call
        except ValidationError:
            events = []
            for record in records:
                try:
                    events.append(Prediction(**record))
                except ValidationError as exc:
                    PREDICTION_LOG.labels("failed").inc()
                    logger.warning("prediction not logged reason=%s", _reason(exc))
        for event in events:
            messages.append((self._topic(event.usecase), event_json(event)))
        return await self._deliver(messages, outcome)

    async def _deliver(self, messages: list[tuple[str, bytes]], outcome: str) -> int:
        """Send ``messages`` until the broker has acknowledged each; return how many."""
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
        """Send each message once; return those the broker did not acknowledge.

        Messages go in record batches the log fills itself (``create_batch``,
        ``send_batch``), spread over the topic's partitions in turn: one
        accumulator call a batch, not one a message.
        """
        by_topic: dict[str, list[int]] = {}
        for index, (topic, _) in enumerate(messages):
            by_topic.setdefault(topic, []).append(index)
        futures: list[tuple[list[int], asyncio.Future[Any]]] = []
        failed: list[int] = []
        error: BaseException | None = None
        for topic, indices in by_topic.items():
            try:
                partitions = sorted(await self.producer.partitions_for(topic))
                for batch, members in self._batches(messages, indices):
                    partition = partitions[self._turn % len(partitions)]
                    self._turn += 1
                    futures.append(
                        (members, await self.producer.send_batch(batch, topic, partition=partition))
                    )
            except Exception as exc:  # no metadata for the topic, buffer timeout
                sent = {i for members, _ in futures for i in members}
                failed.extend(i for i in indices if i not in sent)
                error = exc
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (members, _), result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                failed.extend(members)
                error = result
        if failed:
            logger.error("predictions not acknowledged count=%d error=%r", len(failed), error)
        return [messages[i] for i in sorted(failed)]

    def _batches(
        self, messages: list[tuple[str, bytes]], indices: list[int]
    ) -> list[tuple[Any, list[int]]]:
        """``messages[indices]`` in record batches, each full up to the producer's size."""
        batches: list[tuple[Any, list[int]]] = []
        batch: Any = None
        members: list[int] = []
        for index in indices:
            value = messages[index][1]
            if batch is None or batch.append(timestamp=None, key=None, value=value) is None:
                if batch is not None:
                    batches.append((batch, members))
                batch, members = self.producer.create_batch(), []
                if batch.append(timestamp=None, key=None, value=value) is None:
                    raise ValueError(f"a prediction of {len(value)} bytes fits no batch")
            members.append(index)
        if batch is not None:
            batches.append((batch, members))
        return batches

    # ---- earlier runs ----------------------------------------------------------------

    async def replay(self) -> int:
        """Send the unshipped predictions of every earlier run's segment; return how many.

        A segment locked by a live process (a replica sharing this home) is left to it.
        """
        if not self.directory.is_dir():
            return 0
        count = 0
        for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
            claimed = claim(path)
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


def _reason(error: Exception) -> str:
    """Why a prediction makes no event: pydantic's first message, or the encoder's."""
    if isinstance(error, ValidationError):
        return str(error.errors()[0]["msg"])
    return str(error)
