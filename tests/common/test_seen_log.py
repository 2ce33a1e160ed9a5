"""The SQLite de-dup record as a log of marks held in memory: replicas sharing the file
see each other's marks, and a file from before the log keeps its keyed marks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.common.seen import SeenIds


def test_replicas_on_one_file_see_the_marks_each_appends_after_the_other_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "seen.db"
    a, b = SeenIds(path), SeenIds(path)
    a.add("uc", "raw", ["e1", "e2"], state={"prep:uc/0": {"rows": 2}})
    assert b.unseen("uc", "raw", ["e1", "e2", "e3"]) == {"e3"}
    # b appends without having looked since a's next batch: a's marks come in with it.
    a.add("uc", "raw", ["e4"])
    b.add("uc", "raw", ["e3", "e2"], state={"prep:uc/0": {"rows": 3}})
    assert b.known[("uc", "raw")] == {"e1", "e2", "e3", "e4"}
    assert a.unseen("uc", "raw", ["e1", "e2", "e3", "e4", "e5"]) == {"e5"}
    assert a.unseen("uc", "features", ["e1"]) == {"e1"}  # kinds keep apart
    # A mark both record (two replicas racing on one id) counts once.
    a.known[("uc", "raw")].discard("e3")
    a.add("uc", "raw", ["e3"])
    assert a.count("uc", "raw") == b.count("uc", "raw") == 4
    assert SeenIds(path).unseen("uc", "raw", ["e1", "e3", "e4", "e6"]) == {"e6"}
    assert SeenIds(path).state("prep:uc/0") == {"rows": 3}


def test_marks_of_a_batch_whose_state_fails_stay_out_of_memory_and_of_the_log(
    tmp_path: Path,
) -> None:
    seen = SeenIds(tmp_path / "seen.db")
    seen.add("uc", "raw", ["e1"])
    with pytest.raises(TypeError, match="not JSON serializable"):
        seen.add("uc", "raw", ["e2"], state={"prep:uc/0": {"rows": object()}})
    assert seen.unseen("uc", "raw", ["e1", "e2"]) == {"e2"}
    seen.add("uc", "raw", ["e2", "e3"])
    assert SeenIds(tmp_path / "seen.db").unseen("uc", "raw", ["e1", "e2", "e3", "e4"]) == {"e4"}


def test_a_file_from_before_the_log_has_its_keyed_marks_moved_to_it(tmp_path: Path) -> None:
    path = tmp_path / "seen.db"
    old = sqlite3.connect(path)
    with old:
        old.execute(
            "CREATE TABLE seen (usecase TEXT NOT NULL, kind TEXT NOT NULL,"
            " event_id TEXT NOT NULL, PRIMARY KEY (usecase, kind, event_id)) WITHOUT ROWID"
        )
        old.execute("CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        old.executemany(
            "INSERT INTO seen VALUES (?, ?, ?)",
            [("uc", "raw", "e1"), ("uc", "raw", "e2"), ("uc", "features", "e1")],
        )
        old.execute("""INSERT INTO state VALUES ('prep:uc/0', '{"rows": 2}')""")
    old.close()
    seen, again = SeenIds(path), SeenIds(path)  # the second finds them moved
    assert seen.unseen("uc", "raw", ["e1", "e2", "e3"]) == {"e3"}
    assert again.unseen("uc", "features", ["e1", "e2"]) == {"e2"}
    assert seen.count("uc", "raw") == 2 and seen.state("prep:uc/0") == {"rows": 2}
    tables = {name for (name,) in seen.connection.execute("SELECT name FROM sqlite_master")}
    assert "seen" not in tables and "mark_batches" in tables
