"""The online store's file: 16 KiB pages when new; a file made before keeps its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.common import featurestore as fs
from services.common import onlinestore
from tests.common.toy import SPEC, row


def page_size(home: Path) -> int:
    with sqlite3.connect(home / "feast" / fs.ONLINE_FILE) as connection:
        return int(connection.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_store_has_large_pages_and_feast_reads_what_was_written(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.0)], "part-a")
    assert page_size(home) == onlinestore.PAGE_BYTES == 16_384
    assert fs.online_features(store, SPEC, ["alice"])[0]["x"] == 1.0


def test_a_store_made_with_4_kib_pages_keeps_them_and_works(home: Path) -> None:
    path = home / "feast" / fs.ONLINE_FILE
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as connection:  # as an older driftline made it
        connection.execute("PRAGMA page_size=4096")
        connection.execute("PRAGMA journal_mode=WAL")
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    rows = [row("e1", "alice", 0, 1.0), row("e2", "bob", 1, 2.0)]
    fs.write_features(store, home, SPEC, rows, "part-a")
    assert page_size(home) == 4096
    found = fs.online_features(store, SPEC, ["alice", "bob"])
    assert [r["x"] for r in found] == [1.0, 2.0]
