"""What the telemetry service answers: one use case's windows and story as JSON.

The same document feeds the web console (``/api/telemetry``, and every second
on ``/api/stream``) and ``driftline live``. Times are seconds since the epoch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import topics
from services.telemetry.joined import top_features
from services.telemetry.story import ServingModel, Story
from services.telemetry.windows import Telemetry

RATE_SECONDS = 5
SERIES_SECONDS = 60


def snapshot(telemetry: Telemetry, usecase: str, now: float) -> dict[str, Any]:
    """The whole console view of ``usecase`` at ``now``."""
    story = telemetry.stories[usecase]
    return {
        "usecase": usecase,
        "task": story.task,
        "metric": story.metric,
        "lower_is_better": story.lower_is_better,
        "now": now,
        "started_at": _ts(story.started_at),
        "throughput": throughput(telemetry, usecase, now),
        "deadletters": deadletters(telemetry, story, now),
        "latency_ms": telemetry.latency_percentiles(usecase, now),
        "predictions_by_variant": telemetry.hopping_now(
            "predictions_by_variant", f"{usecase}|", now
        ),
        "models": models(story),
        "alerts": alerts(story),
        "timeline": [
            {"at": _ts(m.at), "kind": m.kind, "text": m.text, "count": m.count}
            for m in story.milestones[:1] + story.milestones[1:][-19:]
        ],
        "promotions": [
            {
                "at": _ts(p.occurred_at),
                "action": p.action,
                "model": f"{p.model_name} v{p.model_version}",
                "was": story.replaced.get(p.event_id),
                "traffic_share": p.traffic_share,
                "scores": p.scores,
                "reason": p.reason,
            }
            for p in list(story.promotions)[::-1]
        ],
        "predictions": [
            {
                "at": _ts(p.occurred_at),
                "entity_id": p.entity_id,
                "model": f"{p.model_name} v{p.model_version}",
                "variant": p.variant,
                "prediction": p.prediction,
                "latency_ms": p.latency_ms,
            }
            for p in list(story.last_predictions)[::-1]
        ],
        "labels": story.labels,
        "unreadable": story.unreadable,
    }


def throughput(telemetry: Telemetry, usecase: str, now: float) -> dict[str, Any]:
    """Per stream of the use case: events/s over 5 s, a 60 s series, the count seen since start."""
    found: dict[str, Any] = {}
    for topic in topics.usecase_topics(usecase):
        series = telemetry.series(topic, now, SERIES_SECONDS)
        found[topic.rpartition(".")[2]] = {
            # The newest whole second may still be arriving: the rate leaves it out.
            "rate": sum(series[-RATE_SECONDS - 1 : -1]) / RATE_SECONDS,
            "series": series,
            "seen": telemetry.totals.get(topic, 0),
        }
    return found


def deadletters(telemetry: Telemetry, story: Story, now: float) -> dict[str, Any]:
    """Dead letters in the last minute, the top reasons, the share of raw events, the last one."""
    reasons = telemetry.hopping_now("deadletter_reasons", f"{story.usecase}|", now)
    minute = sum(reasons.values())
    raw = sum(telemetry.series(topics.raw(story.usecase), now, SERIES_SECONDS))
    last = story.last_deadletter
    return {
        "last_minute": minute,
        "share_of_raw": minute / raw if raw else None,
        "top_reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
        "seen": story.deadletters,
        "last": None if last is None else {"service": last.service, "reason": last.reason},
    }


def models(story: Story) -> dict[str, Any]:
    """Who serves, the online model, the live metric per variant, the batch candidates."""
    online = story.online
    metric = story.metric
    return {
        "champion": _serving(story.champion),
        "challenger": _serving(story.challenger),
        "online": None
        if online is None
        else {
            "label": f"{online.model_name} v{online.model_version}",
            "rows": online.data_window.rows,
            "rolling": online.metrics.get(f"rolling_{metric}"),
            "cumulative": online.metrics.get(metric),
            "history": [[_ts(at), v] for at, v in story.online_history],
        },
        "live": {
            variant: {
                "metrics": story.live_metrics(variant),
                "joined": live.joined,
                "window": len(live.pairs),
                "history": [[_ts(at), v] for at, v in story.live_history.get(variant, [])],
            }
            for variant, live in sorted(story.live.items())
        },
        "candidates": [
            {
                "label": f"{c.model_name} v{c.model_version}",
                "at": _ts(c.occurred_at),
                "score": c.metrics.get(metric),
                "baseline": (c.baseline_metrics or {}).get(metric),
            }
            for c in list(story.candidates)[-3:][::-1]
        ],
    }


def alerts(story: Story) -> list[dict[str, Any]]:
    """The latest drift alerts, newest first, each with its report when it has one."""
    return [
        {
            "alert_id": a.alert_id,
            "at": _ts(a.occurred_at),
            "severity": a.severity,
            "kind": a.kind,
            "method": a.method,
            "drift_share": a.drift_share,
            "features": [[n, v.score, v.drifted] for n, v in top_features(a, 4)],
            "report": f"/reports/{a.alert_id}" if a.report_path else None,
        }
        for a in list(story.alerts)[::-1]
    ]


def _serving(model: ServingModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "label": model.label,
        "name": model.name,
        "version": model.version,
        "role": model.role,
        "traffic_share": model.traffic_share,
        "since": _ts(model.since),
    }


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()
