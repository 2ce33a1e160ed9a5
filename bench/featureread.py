"""B4 feature read: one online lookup as the inference service reads it, against raw SQLite.

A private Feast repo (SQLite online store) is filled with feature rows by the
same :func:`~services.common.featurestore.write_features` the features service
uses; lookups of one entity (every feature of the view) then rotate, call by
call, between three readers of the same key: the candidate, the inference
service's ``direct`` reader (:class:`~services.inference.OnlineReader`,
what serves); the baseline, a plain ``SELECT`` of the entity's row on the
embedded store's table (one row per entity, its features one JSON text, left
undecoded); and the Feast SDK's
``get_online_features`` (``DRIFTLINE_FEATURE_READ=sdk``), whose figure the
notes keep.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.data import workload
from bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Target,
    benchmark,
    measured,
    median,
    percentile,
    spec_of,
)
from bench.stack import write_usecase
from services.inference import OnlineReader

WARMUP_LOOKUPS = 50
SIDES = ("baseline", "candidate", "sdk")


def rotation(index: int) -> tuple[str, ...]:
    """The readers' order for lookup ``index``: each goes first, second, third in turn.

    >>> [rotation(i)[0] for i in range(4)]
    ['baseline', 'candidate', 'sdk', 'baseline']
    """
    shift = index % len(SIDES)
    return SIDES[shift:] + SIDES[:shift]


class RawReader:
    """The baseline: one ``SELECT`` of one entity's row on the view's table.

    The embedded store keeps one row per entity (:mod:`services.common.onlinestore`),
    keyed by the entity's id; the row's features, one JSON text, are not decoded.
    """

    def __init__(self, database: Path, table: str) -> None:
        self.connection = sqlite3.connect(str(database), check_same_thread=False)
        self.query = f'SELECT event_ts, features FROM "{table}" WHERE entity_key = ?'

    def read(self, entity_id: str) -> list[Any]:
        return self.connection.execute(self.query, (entity_id,)).fetchall()

    def close(self) -> None:
        self.connection.close()


@benchmark("B4", "feature read", Target("ratio <= 3", [Criterion("ratio", "<=", 3.0)]))
def feature_read(context: BenchContext) -> Result:
    from services.common import featurestore

    rows = context.size(5_000, 1_000)
    lookups = context.size(2_000, 300)
    context.progress.start(context.repetitions + 1)
    workdir = Path(context.workdir) / "featureread"
    spec = write_usecase(workdir / "usecases", "b4")
    home = workdir / "home"
    store = featurestore.open_store(featurestore.FeatureStoreSettings(home=home), [spec])
    load = workload(spec, rows, seed=3)
    featurestore.write_features(store, home, spec, load.rows, "b4-part-0")
    from services.common import onlinestore

    table = onlinestore.table_name(store.config.project, featurestore.view_name(spec.name))
    raw = RawReader(onlinestore.database_path(store.config), table)
    context.cleanup.callback(raw.close)
    direct = OnlineReader(store, "direct")
    entities = sorted({row.entity_id for row in load.rows})
    names = spec.feature_names()
    # Both paths must find the same row, or the comparison means nothing.
    probe = entities[0]
    found = featurestore.online_features(store, spec, [probe])[0]
    if any(found[name] is None for name in names) or len(raw.read(probe)) != 1:
        raise RuntimeError(f"entity {probe} is not in the online store")
    if direct.read(spec, [probe])[0] != {name: found[name] for name in names}:
        raise RuntimeError(f"the direct and SDK readers disagree on entity {probe}")
    chooser = random.Random(0)
    for _ in range(WARMUP_LOOKUPS):
        entity = chooser.choice(entities)
        featurestore.online_features(store, spec, [entity])
        direct.read(spec, [entity])
        raw.read(entity)
    context.progress.advance()

    def time_one(side: str, entity: str) -> float:
        started = time.perf_counter()
        if side == "baseline":
            raw.read(entity)
        elif side == "candidate":
            direct.read(spec, [entity])
        else:
            featurestore.online_features(store, spec, [entity])
        return time.perf_counter() - started

    p99: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(context.repetitions):
        seconds: dict[str, list[float]] = {side: [] for side in SIDES}
        for index in range(lookups):
            entity = entities[(index * 7919) % len(entities)]
            for side in rotation(index):
                seconds[side].append(time_one(side, entity))
        for name, values in seconds.items():
            p99[name].append(percentile(values, 0.99) * 1000)
        context.progress.advance()
    sdk_p99 = median(p99["sdk"])
    sdk_ratio = sdk_p99 / median(p99["baseline"])
    return measured(
        spec_of("B4"),
        figure=median(p99["candidate"]),
        unit="ms p99",
        baseline=median(p99["baseline"]),
        repetitions=context.repetitions,
        notes=f"the inference service's direct reader; Feast SDK get_online_features p99 "
        f"{sdk_p99:.3f} ms (ratio {sdk_ratio:.1f}); 1 entity, {len(names)} features, "
        f"{len(entities):,} entities online; {lookups:,} lookups a repetition, the three "
        f"readers in rotating order on the same key",
        details={
            "candidate_p99_ms": p99["candidate"],
            "baseline_p99_ms": p99["baseline"],
            "sdk_p99_ms": p99["sdk"],
            "sdk_ratio": sdk_ratio,
            "entities": len(entities),
        },
    )
