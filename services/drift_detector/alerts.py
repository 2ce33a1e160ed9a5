"""Alert policy: hysteresis and cooldown turn many drifted windows into one alert stream.

A monitor (one use case, one kind) enters the *drifting* state when its
score reaches the enter threshold and leaves it only when the score falls
below the (lower) exit threshold, so a score wobbling around the threshold
is one episode, not many. It alerts on entering; while drifting it alerts
again only when the severity rises, and never twice within ``cooldown``
seconds (also across a quick exit and re-entry). Time is event time (the
window's last row), so a replay after a crash makes the same decisions.

>>> gate = Hysteresis(enter=0.3, exit=0.15, cooldown=60)
>>> [gate.update(s, "warning", t) for s, t in [(0.1, 0), (0.4, 10), (0.5, 20), (0.2, 30)]]
[False, True, False, False]
>>> gate.drifting
True
>>> [gate.update(s, "warning", t) for s, t in [(0.1, 40), (0.4, 50), (0.1, 200), (0.4, 300)]]
[False, False, False, True]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.events import DriftAlert

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Hysteresis:
    """The drifting / calm state of one monitor, and when it last alerted."""

    enter: float
    exit: float
    cooldown: float
    drifting: bool = False
    last_alert_at: float | None = None
    last_severity: str = "info"
    episodes: int = 0

    def update(self, score: float, severity: str, at: float) -> bool:
        """Feed one window's score; True when this window should raise an alert."""
        cooled = self.last_alert_at is None or at - self.last_alert_at >= self.cooldown
        if not self.drifting:
            if score < self.enter:
                return False
            self.drifting = True
            self.episodes += 1
            if not cooled:
                return False
            return self._alerted(severity, at)
        if score < self.exit:
            self.drifting = False
            self.last_severity = "info"
            return False
        if cooled and SEVERITY_RANK[severity] > SEVERITY_RANK[self.last_severity]:
            return self._alerted(severity, at)
        return False

    def _alerted(self, severity: str, at: float) -> bool:
        self.last_alert_at = at
        self.last_severity = severity
        return True


def severity_for(score: float, threshold: float) -> str:
    """``critical`` at twice the threshold or more (capped at 1 for shares), else ``warning``.

    >>> severity_for(0.35, 0.3), severity_for(0.6, 0.3), severity_for(1.0, 0.6)
    ('warning', 'critical', 'critical')
    """
    return "critical" if score >= min(2 * threshold, 1.0) else "warning"


def alert_id(usecase: str, kind: str, reference_id: str, position: int) -> str:
    """A stable id: the same window of the same reference always yields the same alert.

    >>> alert_id("credit", "data", "bootstrap", 500) == alert_id("credit", "data", "bootstrap", 500)
    True
    """
    key = f"{usecase}:{kind}:{reference_id}:{position}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def with_report(alert: DriftAlert, report_path: str | None) -> DriftAlert:
    """The alert with the location of its HTML report (a path and a ``file://`` URL)."""
    if report_path is None:
        return alert
    from pathlib import Path

    details = {**alert.details, "report_url": Path(report_path).as_uri()}
    return alert.model_copy(update={"report_path": report_path, "details": details})
