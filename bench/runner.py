"""The benchmark method: interleaved repetitions, medians, ratios, targets, a registry.

Every compared figure is a ratio against a baseline measured in the same run
on the same machine, baseline and candidate interleaved (ABBA order, so a
machine that slows down during the run penalises neither side), and the
median over the repetitions is what the report shows. The pure parts
(order, median, percentile, target check) carry doctests; the runner that
calls benchmark functions is :func:`run_benchmarks`.

>>> [first for first, _ in interleave_order(4)]
['baseline', 'candidate', 'baseline', 'candidate']
>>> median([3.0, 1.0, 2.0])
2.0
>>> Target("ratio >= 0.5", [Criterion("ratio", ">=", 0.5)]).met({"ratio": 0.7})
True
"""

from __future__ import annotations

import logging
import math
import operator
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

Side = Literal["baseline", "candidate"]
Status = Literal["measured", "unavailable", "failed"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}


def interleave_order(repetitions: int) -> list[tuple[Side, Side]]:
    """Which side runs first in each repetition: ABBA, so drift over time cancels.

    >>> interleave_order(1)
    [('baseline', 'candidate')]
    """
    return [
        ("baseline", "candidate") if index % 2 == 0 else ("candidate", "baseline")
        for index in range(repetitions)
    ]


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values.

    >>> median([1.0, 10.0]), math.isnan(median([]))
    (5.5, True)
    """
    return float(statistics.median(values)) if values else math.nan


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0..1) by linear interpolation, as numpy's default.

    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.99)
    4.96
    >>> percentile([7.0], 0.99)
    7.0
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return round(ordered[low] + (ordered[high] - ordered[low]) * fraction, 12)


def ratio(candidate: float | None, baseline: float | None) -> float | None:
    """candidate / baseline; None when either is missing or the baseline is zero.

    >>> ratio(5.0, 10.0), ratio(1.0, 0.0), ratio(None, 1.0)
    (0.5, None, None)
    """
    if candidate is None or baseline is None or baseline == 0:
        return None
    if math.isnan(candidate) or math.isnan(baseline):
        return None
    return candidate / baseline


@dataclass(frozen=True)
class Criterion:
    """One condition of a target: ``values[key] <op> bound``."""

    key: str
    op: Literal[">=", "<=", "=="]
    bound: float | bool

    def holds(self, values: dict[str, Any]) -> bool | None:
        """Whether it holds; None when the value was not measured.

        >>> Criterion("p99_overhead_ms", "<=", 2.0).holds({"p99_overhead_ms": 2.5})
        False
        >>> Criterion("rps_kept", ">=", 0.9).holds({}) is None
        True
        """
        value = values.get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return bool(_OPERATORS[self.op](value, self.bound))


@dataclass(frozen=True)
class Target:
    """The world-class target of a benchmark: a text and the criteria that decide it."""

    text: str
    criteria: list[Criterion]

    def met(self, values: dict[str, Any]) -> bool | None:
        """True when every criterion holds; False when one fails; None when none was measured.

        A criterion whose value was not measured does not count either way; the
        report's notes say what was not measured.

        >>> target = Target("ratio <= 2; rps kept >= 0.9",
        ...                 [Criterion("ratio", "<=", 2.0), Criterion("rps_kept", ">=", 0.9)])
        >>> target.met({"ratio": 1.4}), target.met({"ratio": 3.0}), target.met({})
        (True, False, None)
        """
        verdicts = [criterion.holds(values) for criterion in self.criteria]
        known = [verdict for verdict in verdicts if verdict is not None]
        if not known:
            return None
        return all(known)


@dataclass
class Result:
    """One benchmark's line in the report."""

    id: str
    name: str
    status: Status
    target: str
    figure: float | None = None
    unit: str = ""
    baseline: float | None = None
    ratio: float | None = None
    met: bool | None = None
    notes: str = ""
    repetitions: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unavailable(spec: BenchmarkSpec, reason: str) -> Result:
    """The line of a benchmark that cannot run here, saying why (never a made-up figure)."""
    return Result(spec.id, spec.name, "unavailable", spec.target.text, notes=reason)


def measured(
    spec: BenchmarkSpec,
    *,
    figure: float,
    unit: str,
    baseline: float | None,
    repetitions: int,
    notes: str = "",
    extra: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> Result:
    """A measured line: the ratio from figure and baseline, ``met`` from the target.

    ``extra`` holds further values a target's criteria read (e.g. ``figure_abs``).

    >>> spec = BenchmarkSpec("BX", "demo", Target("ratio >= 0.5", [Criterion("ratio", ">=", 0.5)]),
    ...                      lambda ctx: [])
    >>> line = measured(spec, figure=6.0, unit="events/s", baseline=10.0, repetitions=3)
    >>> round(line.ratio, 2), line.met, line.status
    (0.6, True, 'measured')
    """
    value_ratio = ratio(figure, baseline)
    values: dict[str, Any] = {"figure": figure, "baseline": baseline, "ratio": value_ratio}
    values.update(extra or {})
    return Result(
        spec.id,
        spec.name,
        "measured",
        spec.target.text,
        figure=figure,
        unit=unit,
        baseline=baseline,
        ratio=value_ratio,
        met=spec.target.met(values),
        notes=notes,
        repetitions=repetitions,
        details={**(details or {}), **{k: v for k, v in (extra or {}).items()}},
    )


class Progress:
    """What a benchmark reports its progress to (a rich task, or nothing)."""

    def __init__(self, advance: Callable[[float], None] | None = None) -> None:
        self._advance = advance
        self.total = 0.0

    def start(self, total: float) -> None:
        self.total = total

    def advance(self, steps: float = 1.0) -> None:
        if self._advance is not None:
            self._advance(steps)


@dataclass
class BenchContext:
    """What every benchmark of one run shares: settings, caches and things to clean up."""

    quick: bool
    repetitions: int
    workdir: Any
    progress: Progress = field(default_factory=Progress)
    cache: dict[Any, Any] = field(default_factory=dict)
    cleanup: ExitStack = field(default_factory=ExitStack)
    users: dict[Any, tuple[frozenset[str], Callable[[], None]]] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        """A workload size: ``quick`` with --quick, ``full`` otherwise."""
        return quick if self.quick else full

    def keep(self, key: Any, value: Any, close: Callable[[], None], users: Iterable[str]) -> None:
        """Share ``value`` (a stack) between the benchmarks ``users`` under ``key``: it is
        closed once none of them is left in the run, so that its processes do not take
        the cores of the benchmarks after them (at the latest at the run's end)."""
        self.cache[key] = value
        self.users[key] = (frozenset(users), close)
        self.cleanup.callback(self.release_unused, ())

    def release_unused(self, remaining: Iterable[str]) -> None:
        """Close every kept value that no benchmark in ``remaining`` uses.

        >>> context, closed = BenchContext(quick=True, repetitions=1, workdir="."), []
        >>> context.keep("stack", "s", lambda: closed.append("stack"), users=["B1", "B6"])
        >>> context.release_unused(["B6", "B9"]); closed
        []
        >>> context.release_unused(["B9"]); closed, "stack" in context.cache
        (['stack'], False)
        """
        left = set(remaining)
        for key, (users, close) in list(self.users.items()):
            if not users & left:
                del self.users[key]
                self.cache.pop(key, None)
                close()


BenchFunction = Callable[[BenchContext], Result]


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark: its id, what it measures, its target, its function."""

    id: str
    name: str
    target: Target
    function: Callable[[BenchContext], Any]


REGISTRY: dict[str, BenchmarkSpec] = {}


def benchmark(id: str, name: str, target: Target) -> Callable[[BenchFunction], BenchFunction]:
    """Register a benchmark function under ``id`` (B1..B9); the function gets its spec
    from :data:`REGISTRY` when it builds its result."""

    def register(function: BenchFunction) -> BenchFunction:
        REGISTRY[id] = BenchmarkSpec(id, name, target, function)
        return function

    return register


def spec_of(id: str) -> BenchmarkSpec:
    return REGISTRY[id]


def sort_ids(ids: Iterable[str]) -> list[str]:
    """Benchmark ids in numeric order, a variant (``B1r``) after its benchmark.

    >>> sort_ids(["B10", "B2", "B1r", "B1"])
    ['B1', 'B1r', 'B2', 'B10']
    """

    def key(name: str) -> tuple[int, str]:
        number = re.match(r"B(\d+)(.*)", name)
        return (int(number[1]), number[2]) if number else (10**9, name)

    return sorted(ids, key=key)


def parse_only(text: str | None, known: Iterable[str]) -> list[str]:
    """The ids ``--only`` names (all known ones when empty); unknown ids raise ValueError.

    >>> parse_only("b5, B1", ["B1", "B5", "B9"])
    ['B1', 'B5']
    >>> parse_only("b1R", ["B1", "B1r"])
    ['B1r']
    >>> parse_only(None, ["B2", "B1"])
    ['B1', 'B2']
    """
    by_upper = {name.upper(): name for name in known}
    if not text:
        return sort_ids(by_upper.values())
    wanted = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = sorted(set(wanted) - set(by_upper))
    if unknown:
        raise ValueError(f"unknown benchmark ids {unknown}; known: {sort_ids(by_upper.values())}")
    return sort_ids(dict.fromkeys(by_upper[name] for name in wanted))


def interleaved(
    run: Callable[[Side, int], float],
    repetitions: int,
    progress: Progress | None = None,
) -> tuple[list[float], list[float]]:
    """Run ``run(side, repetition)`` for both sides, interleaved; return (baselines, candidates).

    >>> calls = []
    >>> def fake(side, rep):
    ...     calls.append((side, rep))
    ...     return 1.0 if side == "baseline" else 2.0
    >>> interleaved(fake, 2)
    ([1.0, 1.0], [2.0, 2.0])
    >>> calls
    [('baseline', 0), ('candidate', 0), ('candidate', 1), ('baseline', 1)]
    """
    found: dict[Side, list[float]] = {"baseline": [], "candidate": []}
    for repetition, order in enumerate(interleave_order(repetitions)):
        for side in order:
            found[side].append(run(side, repetition))
            if progress is not None:
                progress.advance()
    return found["baseline"], found["candidate"]


def run_benchmarks(
    ids: Sequence[str],
    context: BenchContext,
    progress_for: Callable[[BenchmarkSpec], Progress] | None = None,
    watch: Callable[[str], AbstractContextManager[dict[str, Any]]] | None = None,
) -> Iterator[Result]:
    """Run the benchmarks ``ids`` in turn, yielding each result as it is known.

    A benchmark that raises becomes a ``failed`` line carrying the error; the
    others still run. Whatever the benchmarks registered for cleanup (service
    processes, brokers) is stopped at the end. ``watch(id)``, when given, is
    entered around each benchmark (the profiler); what it yields, filled when
    it exits, becomes the result's ``details.profile``.
    """
    with context.cleanup:
        for id in ids:
            spec = REGISTRY[id]
            context.progress = progress_for(spec) if progress_for is not None else Progress()
            started = time.monotonic()
            watched = watch(id) if watch is not None else nullcontext({})
            profile: dict[str, Any] = {}
            try:
                with watched as profile:
                    result = spec.function(context)
            except Exception as exc:  # one broken benchmark must not lose the others
                logger.exception("benchmark failed id=%s", id)
                result = Result(
                    spec.id,
                    spec.name,
                    "failed",
                    spec.target.text,
                    notes=f"failed: {type(exc).__name__}: {exc}",
                )
            result.details.setdefault("seconds", round(time.monotonic() - started, 2))
            if profile:
                result.details["profile"] = profile
            context.release_unused(ids[ids.index(id) + 1 :])
            yield result
