"""``python -m bench.active_learning`` draws its learning curves and prints the gap table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.active_learning import main


def test_the_comparison_draws_its_plot_and_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "curves.png"
    argv = ["--seeds", "1", "--labels", "40", "--step", "20", "--holdout", "300", "--out", str(out)]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["labels", "margin", "random"]
    row = lines[1].split()
    assert row[0] == "40" and all(0.0 <= float(value) <= 1.0 for value in row[1:3])


def test_the_comparison_needs_random_among_its_strategies() -> None:
    with pytest.raises(SystemExit):
        main(["--strategies", "margin,entropy"])
