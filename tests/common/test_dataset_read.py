"""Reading a dataset's Parquet parts: chosen columns, parts of different shapes and types."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from services.common.dataset import EVENT_ID, read_parts


def write(directory: Path, name: str, frame: pd.DataFrame) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / name, index=False)


def test_chosen_columns_and_parts_of_different_shapes_read_as_pandas_concatenates(
    tmp_path: Path,
) -> None:
    first = pd.DataFrame({EVENT_ID: ["a", "b"], "x": [1.0, 2.0], "kind": ["p", "q"]})
    later = pd.DataFrame({EVENT_ID: ["b", "c"], "x": [5.0, 3.0], "extra": [7.0, 8.0]})
    write(tmp_path, "part-1.parquet", first)
    write(tmp_path, "part-2.parquet", later)

    rows = read_parts(tmp_path)
    expected = pd.concat([first, later], ignore_index=True).drop_duplicates(EVENT_ID, keep="last")
    pd.testing.assert_frame_equal(rows, expected.reset_index(drop=True), check_like=True)
    assert rows.set_index(EVENT_ID)["x"].to_dict() == {"a": 1.0, "b": 5.0, "c": 3.0}

    chosen = read_parts(tmp_path, columns=[EVENT_ID, "x"])
    assert list(chosen.columns) == [EVENT_ID, "x"] and len(chosen) == 3


def test_parts_whose_column_types_differ_are_read_too(tmp_path: Path) -> None:
    write(tmp_path, "part-1.parquet", pd.DataFrame({EVENT_ID: ["a"], "label": [1]}))
    write(tmp_path, "part-2.parquet", pd.DataFrame({EVENT_ID: ["b"], "label": ["yes"]}))
    rows = read_parts(tmp_path)
    assert rows["label"].tolist() == [1, "yes"]


def test_an_empty_or_absent_dataset_reads_as_an_empty_frame(tmp_path: Path) -> None:
    assert read_parts(tmp_path / "absent").empty
    assert read_parts(tmp_path).empty


def test_writers_sharing_a_dataset_compact_it_without_losing_or_tripping_over_parts(
    tmp_path: Path,
) -> None:
    """Two features replicas write one use case's labels (the production profile); each
    compacts after its write. Before, a writer merged the parts it had listed before it
    took the lock, which another writer's merge had removed (FileNotFoundError in CI)."""
    import threading

    from services.common.dataset import compact_dataset, read_dataset, write_parquet_part

    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for batch in range(120):
                ids = [f"{name}-{batch}-{i}" for i in range(3)]
                frame = pd.DataFrame({EVENT_ID: ids, "x": [1.0, 2.0, 3.0]})
                write_parquet_part(tmp_path, frame, f"{name}-{batch:06d}")
                compact_dataset(tmp_path, max_parts=4)
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("one", "two", "three")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    rows = read_dataset(tmp_path)
    assert len(rows) == 3 * 120 * 3 and rows[EVENT_ID].is_unique
