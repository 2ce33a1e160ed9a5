"""Sliding count windows: the last ``size`` rows, checked every ``step`` new rows.

>>> window = SlidingWindow(size=3, step=2)
>>> [window.add(WindowRow(float(i), {"x": i})) for i in range(5)]
[False, True, False, True, False]
>>> [row.values["x"] for row in window.rows()], window.bounds().rows
([2, 3, 4], 3)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import Window


@dataclass(frozen=True)
class WindowRow:
    """One row of a window: its event time (epoch seconds) and its values by name."""

    at: float
    values: dict[str, Any]


class SlidingWindow:
    """The last ``size`` rows; :meth:`add` says when ``step`` rows arrived since the last check."""

    def __init__(self, size: int, step: int) -> None:
        self.size = size
        self.step = step
        self._rows: deque[WindowRow] = deque(maxlen=size)
        self.since_check = 0
        self.total = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: WindowRow) -> bool:
        """Append a row; True when a check is due (``step`` rows since the last one)."""
        self._rows.append(row)
        self.total += 1
        self.since_check += 1
        if self.since_check >= self.step:
            self.since_check = 0
            return True
        return False

    def rows(self) -> list[WindowRow]:
        """A copy of the rows, oldest first (safe to hand to a worker thread)."""
        return list(self._rows)

    def fresh_since(self) -> datetime | None:
        """The event time of the earliest of the rows no earlier check saw (None if empty).

        At a check those are the last ``step`` rows (or all, after a :meth:`clear`); a
        check that enters drift followed a calm one, so the drift began in them or later.

        >>> window = SlidingWindow(size=4, step=2)
        >>> [window.add(WindowRow(float(t), {})) for t in range(6)][-1]
        True
        >>> window.fresh_since().isoformat(), SlidingWindow(4, 2).fresh_since()
        ('1970-01-01T00:00:04+00:00', None)
        """
        fresh = list(self._rows)[-self.step :]
        if not fresh:
            return None
        return datetime.fromtimestamp(min(row.at for row in fresh), UTC)

    def clear(self) -> None:
        self._rows.clear()
        self.since_check = 0

    def bounds(self) -> Window:
        """The window's event-time bounds and row count."""
        return bounds_of(list(self._rows))


def bounds_of(rows: list[WindowRow]) -> Window:
    """The :class:`~schemas.events.Window` spanned by ``rows``.

    >>> bounds_of([WindowRow(0.0, {}), WindowRow(60.0, {})]).end.isoformat()
    '1970-01-01T00:01:00+00:00'
    >>> bounds_of([]).rows
    0
    """
    if not rows:
        return Window(rows=0)
    times = [row.at for row in rows]
    return Window(
        start=datetime.fromtimestamp(min(times), UTC),
        end=datetime.fromtimestamp(max(times), UTC),
        rows=len(rows),
    )
