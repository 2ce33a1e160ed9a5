"""Checkpoints: a service's state and its consumed offsets, in one file, written atomically.

The file is written to a temporary name, flushed to disk and renamed over the
old one, so a crash leaves either the old or the new checkpoint, never half
of one. A service writes it before committing offsets and seeks to its
offsets on start, so state and offsets always agree.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "uc.ckpt"
>>> load_checkpoint(path) is None
True
>>> save_checkpoint(path, {"offsets": {offset_key("uc.labels", 0): 7}})
>>> load_checkpoint(path)
{'offsets': {'uc.labels:0': 7}}
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import DriftlineError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)


class CheckpointError(DriftlineError):
    """A checkpoint file that exists but cannot be read."""


def offset_key(topic: str, partition: int) -> str:
    """How a partition is named in a checkpoint.

    >>> offset_key("credit.features", 0)
    'credit.features:0'
    """
    return f"{topic}:{partition}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: Any) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    write_atomically(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def save_text(path: Path, text: str) -> None:
    """Write a small text file atomically."""
    write_atomically(path, text.encode())


def load_checkpoint(path: Path, error: type[Exception] = CheckpointError) -> Any | None:
    """The state saved at ``path``, or None if there is none yet; ``error`` if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise error(f"{path}: unreadable checkpoint: {exc}") from exc


async def resume(
    consumer: AIOKafkaConsumer, offsets: dict[str, int], *, owner: str, probe_ms: int = 15_000
) -> dict[str, int]:
    """Seek each assigned partition to its checkpointed offset, never outside the log.

    A partition the checkpoint does not name starts at the log's beginning. An
    offset past the log's end means the log is not the one the checkpoint was
    written on (a broker that lost its log): the partition is read from its
    beginning, so no event of the new log is skipped. An offset before the
    log's beginning means retention removed events before they were read:
    they are gone, and the count is logged. Returns where each partition starts.

    The end is the high watermark a fetch answer carries: tansu 0.6 answers
    ``ListOffsets`` for the end with the last batch's base offset plus one (1
    for 100 records sent in one batch, measured), and a fetch past its end
    returns nothing instead of ``OFFSET_OUT_OF_RANGE``, so a consumer left
    there would wait forever. On Apache Kafka that fetch is out of range and
    the consumer's ``auto_offset_reset`` (earliest) applies as well. The probe
    fetches until every probed partition's watermark is known (a busy machine
    answers the first fetch late), ``probe_ms`` at most.
    """
    assigned = sorted(consumer.assignment())
    if not assigned:
        return {}
    beginnings = await consumer.beginning_offsets(assigned)
    starts: dict[TopicPartition, int] = {}
    for partition in assigned:
        key = offset_key(partition.topic, partition.partition)
        first, saved = beginnings[partition], offsets.get(key)
        start = first if saved is None else saved
        if start < first:
            logger.warning(
                "%s: retention removed %d events of %s before they were read",
                owner, first - start, key,
            )  # fmt: skip
            start = first
        consumer.seek(partition, start)
        starts[partition] = start
    probing = [tp for tp in assigned if starts[tp] > beginnings[tp]]
    if probing:
        await _fetch_highwaters(consumer, probing, probe_ms)
        for partition in probing:
            end = consumer.highwater(partition)
            if end is not None and starts[partition] > end:
                logger.warning(
                    "%s: checkpoint offset %s is past the end %s of %s: another log; "
                    "reading it from its beginning",
                    owner, starts[partition], end,
                    offset_key(partition.topic, partition.partition),
                )  # fmt: skip
                starts[partition] = beginnings[partition]
            consumer.seek(partition, starts[partition])  # what the probe fetched is read again
    return {offset_key(tp.topic, tp.partition): start for tp, start in starts.items()}


async def _fetch_highwaters(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], probe_ms: int
) -> None:
    """Fetch from ``partitions`` until each one's high watermark is known, ``probe_ms`` at most."""
    deadline = asyncio.get_running_loop().time() + probe_ms / 1000
    waiting = list(partitions)
    while waiting and asyncio.get_running_loop().time() < deadline:
        await consumer.getmany(*waiting, timeout_ms=200, max_records=1)
        waiting = [tp for tp in waiting if consumer.highwater(tp) is None]
    if waiting:
        logger.warning("no fetch answer for %s in %d ms: their ends are unknown", waiting, probe_ms)
