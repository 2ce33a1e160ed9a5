"""The prediction log's journal on disk: segment files, their shipped offsets, locks.

A segment is a file of JSON lines that one process appends to and holds an
exclusive ``flock`` on from creation to deletion; its sidecar
``<segment>.shipped`` holds how many of its bytes the broker has acknowledged:
the live process overwrites it in place (:meth:`Segment.record_shipped`), a
replay replaces it (:func:`write_shipped`), each whole.
:mod:`services.inference.predlog` writes and ships them.

A line is the ``Prediction`` event's own JSON (:func:`event_line`), the bytes that
go on ``<uc>.predictions``; a journal of an earlier release (a line of the event's
fields, its time in Unix seconds) is read and sent the same way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import msgspec

from schemas.events import Prediction

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
SHIPPED_SUFFIX = ".shipped"


_ENCODE = msgspec.json.Encoder().encode
event_json = Prediction.__pydantic_serializer__.to_json  # what model_dump_json() calls
_FIELDS = tuple(Prediction.model_fields)
_EVENT_TYPE = Prediction.model_fields["event_type"].default
_SCHEMA_VERSION = Prediction.model_fields["schema_version"].default
_VARIANTS = frozenset(("champion", "challenger", "shadow"))
_isfinite = math.isfinite


def event_line(fields: dict[str, Any]) -> bytes:
    """The ``Prediction`` of ``fields`` (its keyword arguments) as ``model_dump_json``
    writes it; raises pydantic's ``ValidationError`` for fields that make no prediction.

    The request path's common case (every field given, in the model's order; text
    ids, a known variant, finite floats, a time in UTC) is encoded by msgspec as it
    is: the same event in the same bytes, but for a float written with an exponent
    (``1e+16`` where pydantic writes ``1e16``), at a tenth of the model's cost.
    Anything else is built and written by pydantic itself.

    >>> from datetime import UTC, datetime
    >>> fields = {"event_id": "e", "event_type": "prediction", "schema_version": 1,
    ...           "occurred_at": datetime(2026, 1, 1, tzinfo=UTC), "usecase": "credit",
    ...           "prediction_id": "p", "source_event_id": None, "entity_id": "c",
    ...           "model_name": "m", "model_version": "1", "variant": "champion",
    ...           "prediction": 1, "probabilities": {"1": 0.75}, "latency_ms": 1.5}
    >>> event_line(fields) == Prediction(**fields).model_dump_json().encode()
    True
    >>> event_line({**fields, "latency_ms": -1.0})
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Prediction
    ...
    """
    if _common(fields):
        return _ENCODE(fields)
    return event_json(Prediction(**fields))


def _common(f: dict[str, Any]) -> bool:
    """Fields whose JSON msgspec writes as the model does (else: pydantic decides)."""
    if tuple(f) != _FIELDS:
        return False  # a field missing, out of order, or one the model forbids
    if not (
        type(f["event_id"]) is str and f["event_id"]
        and type(f["usecase"]) is str and f["usecase"]
        and type(f["prediction_id"]) is str and type(f["entity_id"]) is str
        and type(f["model_name"]) is str and type(f["model_version"]) is str
        and (f["source_event_id"] is None or type(f["source_event_id"]) is str)
        and f["variant"] in _VARIANTS and f["event_type"] == _EVENT_TYPE
        and type(f["schema_version"]) is int and f["schema_version"] == _SCHEMA_VERSION
        and type(f["occurred_at"]) is datetime and f["occurred_at"].tzinfo is UTC
    ):  # fmt: skip
        return False
    latency, prediction, probabilities = f["latency_ms"], f["prediction"], f["probabilities"]
    if type(latency) is not float or not (_isfinite(latency) and latency >= 0):
        return False
    kind = type(prediction)
    if kind is float:
        if not _isfinite(prediction):
            return False
    elif not (kind is str or kind is int or kind is bool):
        return False
    if probabilities is None:
        return True
    # a sum is finite only if every float is (an overflow: pydantic decides, as it would)
    return (
        type(probabilities) is dict
        and _floats(probabilities)
        and _isfinite(sum(probabilities.values()))
    )


def _floats(mapping: dict[Any, Any]) -> bool:
    return all(type(key) is str and type(value) is float for key, value in mapping.items())


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
        self._shipped: int | None = None  # the sidecar's descriptor, once written

    def append(self, line: bytes) -> int:
        """Write ``line`` to the OS; return the offset just past it."""
        written = 0
        while written < len(line):
            written += self.file.write(line[written:]) or 0
        self.size += written
        return self.size

    def record_shipped(self, offset: int) -> None:
        """Record the shipped offset: one ``pwrite`` of a fixed-width number over the last.

        What :func:`read_shipped` reads, at a fraction of :func:`write_shipped`'s
        cost (a temporary file and a rename: about 150 us, on the event loop,
        against 1 us). A write this small to a file is whole or not at all
        when the process dies; like the journal, it is not fsynced.
        """
        if self._shipped is None:
            self._shipped = os.open(shipped_path(self.path), os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(self._shipped, b"%020d" % offset, 0)

    def close(self) -> None:
        """Close the segment and its sidecar (the lock goes with them: the next start resends)."""
        if self._shipped is not None:
            os.close(self._shipped)
            self._shipped = None
        self.file.close()

    def delete(self) -> None:
        delete_segment(self.path)
        self.close()


def claim(path: Path) -> BinaryIO | None:
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
