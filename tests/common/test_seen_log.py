"""The SQLite de-dup record as a log of marks held in memory: replicas sharing the file
see each other's marks, and a file from before the log keeps its keyed marks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import services.common.seen_marks as seen_marks
from services.common.seen import SeenIds
from services.common.seen_marks import SqliteMarks


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
    assert b.unseen("uc", "raw", ["e1", "e2", "e3", "e4", "e5"]) == {"e5"}
    assert b.count("uc", "raw") == 4
    assert a.unseen("uc", "raw", ["e1", "e2", "e3", "e4", "e5"]) == {"e5"}
    assert a.unseen("uc", "features", ["e1"]) == {"e1"}  # kinds keep apart
    # A mark both record (two replicas racing on one id) counts once.
    assert a.unseen("uc", "raw", ["e7"]) == b.unseen("uc", "raw", ["e7"]) == {"e7"}
    a.add("uc", "raw", ["e7"])
    b.add("uc", "raw", ["e7", "e8"])
    marks = "SELECT sum(json_array_length(event_ids)) FROM mark_batches"
    assert a.connection.execute(marks).fetchone() == (7,)  # e7 twice: b had not looked
    assert a.count("uc", "raw") == b.count("uc", "raw") == SeenIds(path).count("uc", "raw") == 6
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


def test_ids_whose_hashes_collide_are_told_apart_by_their_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every id hashes to its first letter: "a1" and "a2" collide, as 64-bit hashes may.
    monkeypatch.setattr(
        seen_marks, "hash_ids", lambda ids: np.array([ord(i[0]) for i in ids], "<u8")
    )
    path = tmp_path / "seen.db"
    a, b = SeenIds(path), SeenIds(path)
    a.add("uc", "raw", ["a1", "b1"])
    assert a.unseen("uc", "raw", ["a1", "a2", "b1", "c1"]) == {"a2", "c1"}
    b.add("uc", "raw", ["a2", "a1"])  # b had not looked: a1 is appended again
    a.add("uc", "raw", ["a3"])
    assert a.unseen("uc", "raw", ["a1", "a2", "a3", "a4"]) == {"a4"}
    assert a.count("uc", "raw") == b.count("uc", "raw") == 4  # a1, a2, a3, b1
    again = SeenIds(path)
    assert again.unseen("uc", "raw", ["a1", "a2", "a3", "a4", "b1", "b2"]) == {"a4", "b2"}
    assert again.count("uc", "raw") == 4


def test_memory_holds_16_bytes_a_mark(tmp_path: Path) -> None:
    path = tmp_path / "seen.db"
    seen = SeenIds(path)
    seen.add("uc", "raw", ["e1", "e2", "e3"])
    seen.add("uc", "features", ["e1"])
    ids = [f"id-{n}" for n in range(50_000)]
    seen.add("uc", "raw", ids)
    assert SeenIds(path).unseen("uc", "raw", [*ids[::999], "e1", "new"]) == {"new"}
    assert isinstance(seen.store, SqliteMarks)
    held = sum(h.nbytes + r.nbytes for h, r in seen.store.marks[("uc", "raw")].runs)
    assert held == 16 * seen.count("uc", "raw") == 16 * 50_003


def test_a_log_row_without_hashes_is_refused(tmp_path: Path) -> None:
    seen = SeenIds(tmp_path / "seen.db")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        seen.connection.execute(
            "INSERT INTO mark_batches (usecase, kind, event_ids) VALUES ('uc', 'raw', '[\"e1\"]')"
        )
