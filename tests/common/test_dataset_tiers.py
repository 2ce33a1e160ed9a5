"""Tiered compaction of a Parquet dataset: a row is rewritten once a tier, the parts stay
bounded, every row is read back once, a redelivered row's last copy wins."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from services.common import dataset


def part(index: int, ids: list[str], value: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({dataset.EVENT_ID: ids, "x": [value] * len(ids)})


def test_parts_merge_by_tier_and_every_row_is_read_back_once(tmp_path: Path) -> None:
    for index in range(1, 60):
        name = f"uc.features-0-{index:012d}"
        dataset.write_parquet_part(tmp_path, part(index, [f"e{index}a", f"e{index}b"]), name)
        merged = dataset.compact_dataset(tmp_path, max_parts=3)
        assert merged in (0, 4, 8)  # a tier's 4 parts (and the next tier's 4 in turn)
        tiers = [dataset._tier(p) for p in tmp_path.glob("*.parquet")]
        assert all(tiers.count(tier) <= 3 for tier in set(tiers))
    # Tier 1 parts hold 8 rows, tier 2 parts 32: no merge rewrote every row so far.
    sizes = sorted(len(pd.read_parquet(p)) for p in tmp_path.glob("*.parquet"))
    assert sizes[-1] == 32 and sum(sizes) == 59 * 2
    frame = dataset.read_dataset(tmp_path)
    assert sorted(frame[dataset.EVENT_ID]) == sorted(f"e{i}{s}" for i in range(1, 60) for s in "ab")
    assert {dataset._tier(p) for p in tmp_path.glob("*.parquet")} >= {1, 2}


def test_a_row_written_again_later_keeps_its_last_values_across_tiers(tmp_path: Path) -> None:
    dataset.write_parquet_part(tmp_path, part(0, ["e1"], 1.0), "uc.features-0-000000000000")
    for index in range(1, 20):  # e1's first copy goes up a tier or two
        dataset.write_parquet_part(
            tmp_path, part(index, [f"f{index}"]), f"uc.features-0-{index:012d}"
        )
        dataset.compact_dataset(tmp_path, max_parts=3)
    dataset.write_parquet_part(tmp_path, part(20, ["e1"], 2.0), "uc.features-0-000000000020")
    frame = dataset.read_dataset(tmp_path)
    assert frame.loc[frame[dataset.EVENT_ID] == "e1", "x"].tolist() == [2.0]


def test_a_part_merged_before_tiers_counts_as_tier_one_and_is_read_first(tmp_path: Path) -> None:
    legacy = "compacted-" + "0f" * 16
    dataset.write_parquet_part(tmp_path, part(0, ["e1"], 1.0), legacy)
    newer = dataset.write_parquet_part(tmp_path, part(1, ["e1"], 2.0), dataset._tier_name(1))
    assert dataset._tier(tmp_path / f"{legacy}.parquet") == dataset._tier(newer) == 1
    frame = dataset.read_dataset(tmp_path)
    assert frame["x"].tolist() == [2.0]
