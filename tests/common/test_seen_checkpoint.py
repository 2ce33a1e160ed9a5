"""The SQLite de-dup record checkpoints its write-ahead log every CHECKPOINT_PAGES pages,
not SQLite's 1,000 (a batch's marks dirty about 2,000); marks are read beside it."""

from __future__ import annotations

import uuid
from pathlib import Path

from services.common.seen import SeenIds
from services.common.seen_marks import CHECKPOINT_PAGES


def test_the_log_is_checkpointed_less_often_and_a_second_reader_sees_every_mark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "seen.db"
    writer, reader = SeenIds(path), SeenIds(path)
    assert writer.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (CHECKPOINT_PAGES,)
    ids = [uuid.uuid4().hex for _ in range(6_000)]
    for start in range(0, len(ids), 2_000):
        writer.add("credit", "raw", ids[start : start + 2_000], state={"prep:credit/0": start})
    assert reader.unseen("credit", "raw", [*ids, "fresh"]) == {"fresh"}
    assert reader.count("credit", "raw") == 6_000 and reader.state("prep:credit/0") == 4_000
    writer.close()
    reader.close()
    assert SeenIds(path).count("credit", "raw") == 6_000
