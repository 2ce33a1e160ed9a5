"""The embedded online store: one row per entity, read by Feast's own SDK."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
from feast.data_source import PushMode

from services.common import featurestore as fs
from services.common import onlinestore
from tests.common.toy import SPEC, T0, row


def table_rows(home: Path) -> list[tuple[str, str]]:
    path = home / "feast" / fs.ONLINE_FILE
    table = onlinestore.table_name(fs.PROJECT, fs.view_name("toy"))
    with sqlite3.connect(path) as connection:
        return connection.execute(f'SELECT entity_key, features FROM "{table}"').fetchall()


def test_the_embedded_profile_uses_the_one_row_store(home: Path) -> None:
    config = fs.repo_config(fs.FeatureStoreSettings(home=home))
    assert isinstance(config.online_store, onlinestore.SqliteRowsOnlineStoreConfig)


def test_one_row_per_entity_the_last_written_and_feast_reads_it(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    rows = [row("e1", "alice", 0, 1.0), row("e2", "bob", 1, 2.0), row("e3", "alice", 2, 3.0)]
    fs.write_features(store, home, SPEC, rows, "part-a")

    stored = table_rows(home)
    assert sorted(entity for entity, _ in stored) == ["alice", "bob"]
    found = fs.online_features(store, SPEC, ["alice", "bob", "nobody"])
    assert found[0][fs.EVENT_ID] == "e3" and found[0]["x"] == 3.0 and found[0]["c_1"] == 1.0
    assert found[1][fs.EVENT_ID] == "e2" and found[1]["x"] == 2.0
    assert found[2][fs.EVENT_ID] is None and found[2]["x"] is None


def test_a_feast_push_goes_through_the_store_too(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    frame = pd.DataFrame(
        {
            fs.ENTITY_KEY: ["carol"],
            fs.TIMESTAMP: [pd.Timestamp(T0)],
            fs.EVENT_ID: ["p1"],
            "x": [7.5],
            "c_1": [0.0],
            "c_2": [1.0],
        }
    )
    store.push(fs.push_source_name("toy"), frame, to=PushMode.ONLINE)

    found = fs.online_features(store, SPEC, ["carol"])[0]
    assert (found[fs.EVENT_ID], found["x"], found["c_2"]) == ("p1", 7.5, 1.0)


def test_read_entities_gives_plain_values(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.5)], "part-a")

    path = onlinestore.database_path(store.config)
    table = onlinestore.table_name(fs.PROJECT, fs.view_name("toy"))
    with sqlite3.connect(path) as connection:
        found = onlinestore.read_entities(connection, table, ["alice", "nobody"])
    assert list(found) == ["alice"]
    moment, features = found["alice"]
    assert moment == T0.timestamp()
    assert features == {fs.EVENT_ID: "e1", "x": 1.5, "c_1": 1.0, "c_2": 0.0}


def test_read_rows_answers_as_feast_does(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.5)], "part-a")

    names = SPEC.feature_names()
    direct = onlinestore.read_rows(store.config, fs.view_name("toy"), ["alice", "nobody"], names)
    sdk = fs.online_features(store, SPEC, ["alice"])[0]
    assert direct == [{name: sdk[name] for name in names}, None]
