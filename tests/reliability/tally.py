"""What the reliability suite tried and what survived, printed at the end of the run.

Tests add to :data:`COUNTS`; ``conftest.py`` prints the non-zero counts in
pytest's terminal summary, the figures the README's reliability table quotes.
"""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()

LABELS = {
    "faults_injected": "faults injected (SIGKILL, broker absent, Redis absent)",
    "faults_survived": "faults survived (service recovered, counts agree)",
    "bad_inputs": "bad inputs tried (API requests, events, spec documents)",
    "events_checked": "events accounted for after faults and load",
    "events_lost": "events lost",
    "events_doubled": "events applied twice",
    "events_redelivered": "events delivered twice (at-least-once topics, deduplicated by id)",
    "load_requests": "requests under sustained load",
    "load_errors": "errors under sustained load",
}


def add(name: str, count: int = 1) -> None:
    COUNTS[name] += count


def summary() -> list[str]:
    return [f"{LABELS.get(name, name)}: {COUNTS[name]}" for name in LABELS if name in COUNTS]
