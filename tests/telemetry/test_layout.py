"""The faust tables laid out by their source topics' partition counts, without a broker."""

from __future__ import annotations

from pathlib import Path

from schemas import topics
from schemas.usecase import load_usecase
from services.common.settings import CommonSettings
from services.telemetry.layout import Layout, source_topics
from services.telemetry.windows import Telemetry
from tests.conftest import USECASES

# The production profile's 3 partitions, beside topics made earlier with 1.
EARLIER = {"credit.labels": 1, topics.MODELS_CANDIDATES: 1, topics.MODELS_PROMOTIONS: 1}
COUNTS = {**{name: 3 for name in source_topics(["credit"])}, **EARLIER}


def test_each_table_and_changelog_has_its_sources_partition_count(tmp_path: Path) -> None:
    settings = CommonSettings(home=tmp_path, usecases_dir=USECASES, partitions=3)
    telemetry = Telemetry(settings, {"credit": load_usecase(USECASES / "credit.yaml")})
    layout = Layout(COUNTS)
    app = telemetry._build(layout)
    tables = dict(app.tables.items())
    assert {name: table.partitions for name, table in tables.items()} == layout.tables()
    changelogs = {
        t.changelog_topic.get_topic_name(): t.changelog_topic.partitions for t in tables.values()
    }
    assert changelogs == layout.changelogs(telemetry.app_id)
    assert changelogs[f"{telemetry.app_id}-throughput-p1-changelog"] == 1  # the labels' windows
    assert changelogs[f"{telemetry.app_id}-alerts-p3-changelog"] == 3
    # One agent per partition count of the streams, one per loop topic.
    assert sorted(app.agents) == [
        "telemetry_alerts_p3", "telemetry_candidates_p1", "telemetry_promotions_p1",
        "telemetry_requests_p3", "telemetry_streams_p1", "telemetry_streams_p3",
    ]  # fmt: skip
    # The replay into the stories is registered once (faust calls it after every table).
    assert sum(len(table._recover_callbacks) for table in tables.values()) == 1


def test_readers_answer_before_the_tables_exist(tmp_path: Path) -> None:
    settings = CommonSettings(home=tmp_path, usecases_dir=USECASES)
    telemetry = Telemetry(settings, {"credit": load_usecase(USECASES / "credit.yaml")})
    assert telemetry.series("credit.raw", now=100.0, seconds=3) == [0, 0, 0]
    assert telemetry.hopping_now("predictions_by_variant", "credit|", now=100.0) == {}
    assert telemetry.latency_percentiles("credit", now=100.0) == {}
