"""The de-dup record in PostgreSQL (issue 14 point 1): marks that follow a partition.

Against this machine's PostgreSQL (127.0.0.1:5432, user postgres, database
``test``), each test in a schema of its own that is dropped after; skipped,
with the reason, where PostgreSQL or its driver is absent. Two records on one
database stand for two machines: each sees the other's marks, and an
ingestion replica that takes a partition over with an empty home of its own
knows a source's repeats as duplicates.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common.seen import SeenIds, StateSettings, open_seen_ids
from services.common.settings import CommonSettings
from tests.integration.test_ingest_path import valid_events
from tests.integration.test_production_profile import POSTGRES, postgres_admin
from tests.stack import ROOT, publish_raw, read_topic


@pytest.fixture
def state_url() -> Iterator[str]:
    """A URL of this machine's PostgreSQL whose tables go to a fresh schema, dropped after."""
    admin = postgres_admin()
    schema = f"driftline_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    try:
        yield (
            f"postgresql+psycopg2://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}"
            f"/{POSTGRES['dbname']}?options=-csearch_path%3D{schema}"
        )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


def test_two_machines_see_each_others_marks_and_state(state_url: str) -> None:
    a, b = SeenIds(state_url, tables="g-ingestion"), SeenIds(state_url, tables="g-ingestion")
    other = SeenIds(state_url, tables="other-ingestion")  # another stack on the database
    try:
        a.add("uc", "raw", ["e1", "e2"], state={"prep:uc/0": {"rows": 2}})
        assert b.unseen("uc", "raw", ["e1", "e2", "e3"]) == {"e3"}
        assert b.state("prep:uc/0") == {"rows": 2}
        b.add("uc", "raw", ["e3"], state={"prep:uc/0": {"rows": 3}, "prep:uc/1": {"rows": 1}})
        assert a.unseen("uc", "raw", ["e1", "e3"]) == set() and a.count("uc", "raw") == 3
        assert a.states("prep:uc/") == [("prep:uc/0", {"rows": 3}), ("prep:uc/1", {"rows": 1})]
        assert a.unseen("uc", "features", ["e1"]) == {"e1"}  # kinds keep apart
        assert other.unseen("uc", "raw", ["e1"]) == {"e1"} and other.state("prep:uc/0") is None
        many = [f"m{i}" for i in range(1200)]  # more than one query's and one page's worth
        a.add("uc", "raw", many)
        assert b.unseen("uc", "raw", [*many, "new"]) == {"new"}
    finally:
        for seen in (a, b, other):
            seen.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_marks_are_not_recorded_when_their_state_is_not(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Marks and state in one transaction: a state that cannot be saved leaves no marks."""
    where = tmp_path / "seen.db" if backend == "sqlite" else request.getfixturevalue("state_url")
    seen = SeenIds(where, tables="g-ingestion")
    try:
        with pytest.raises(TypeError, match="not JSON serializable"):
            seen.add("uc", "raw", ["e1"], state={"prep:uc/0": {"rows": object()}})
        assert seen.unseen("uc", "raw", ["e1"]) == {"e1"} and seen.state("prep:uc/0") is None
    finally:
        seen.close()


def test_replicas_that_start_together_create_the_tables_once(state_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[SeenIds] = []

    def start() -> None:
        try:
            opened.append(SeenIds(state_url, tables="together-features"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(opened) == 6
    for seen in opened:
        seen.close()


def test_unset_the_record_is_the_services_sqlite_file_and_a_url_must_be_postgresql(
    tmp_path: Path,
) -> None:
    record = open_seen_ids(CommonSettings(home=tmp_path), "features", None)
    record.add("uc", "features", ["e1"])
    record.close()
    assert SeenIds(tmp_path / "features" / "seen.db").count("uc", "features") == 1
    with pytest.raises(ValueError, match="DRIFTLINE_STATE_URL must start with"):
        StateSettings(state_url="mysql://db/state")
    url = "postgresql://driftline:secret@db/state"
    assert "secret" not in repr(StateSettings(state_url=url))


@pytest.mark.integration
def test_a_replica_that_takes_the_partition_over_knows_a_sources_repeats(
    bootstrap: str,
    unique: str,
    tmp_path: Path,
    state_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ingestion on machine A handles 20 events and stops; the source then sends 10 of
    them again, and 10 new ones. Machine B, with an empty home of its own, takes the
    partition over: the repeats are duplicates there too, so ``<uc>.features`` holds
    each event once (30 rows; with a SQLite record per machine, 40)."""
    from services.common.health import HealthServer
    from services.ingestion.processor import KIND
    from services.ingestion.service import IngestionSettings, serve

    monkeypatch.setenv("DRIFTLINE_STATE_URL", state_url)
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    (usecases / f"{unique}.yaml").write_text((ROOT / "usecases" / "credit.yaml").read_text())
    spec = load_usecase(usecases / f"{unique}.yaml")
    events = [json.dumps(e).encode() for e in valid_events(spec, 30)]
    features = topics.features(unique)

    def settings(machine: str) -> IngestionSettings:
        return IngestionSettings(
            bootstrap=bootstrap, home=tmp_path / machine, usecases_dir=usecases, group_prefix=unique
        )

    async def replica(machine: str, rows: int) -> None:
        """One machine's ingestion, stopped (as SIGTERM stops it) once ``rows`` rows are out."""
        stop = asyncio.Event()
        body = asyncio.create_task(
            serve(settings(machine), stop, HealthServer("ingestion", "127.0.0.1", 0))
        )
        deadline = asyncio.get_running_loop().time() + 60
        while len(await asyncio.to_thread(read_topic, bootstrap, features, 0.3)) < rows:
            assert not body.done(), body.exception()
            assert asyncio.get_running_loop().time() < deadline, f"{machine} did not catch up"
            await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(body, 30)

    publish_raw(bootstrap, topics.raw(unique), events[:20])
    asyncio.run(replica("a", 20))
    publish_raw(bootstrap, topics.raw(unique), events[10:20] + events[20:])
    asyncio.run(replica("b", 30))  # the repeats come first: once the new rows are out, all is

    rows = read_topic(bootstrap, features)
    sources = [row["source_event_id"] for row in rows]
    assert len(sources) == 30 and len(set(sources)) == 30
    assert not (tmp_path / "b" / "ingestion" / "seen.db").exists()  # B's marks: PostgreSQL's
    record = open_seen_ids(settings("b"), "ingestion", StateSettings().state_url)
    try:
        assert record.count(unique, KIND) == 30
    finally:
        record.close()
