"""``driftline bench``: the method on synthetic timings, the report, one real quick run.

No test here asserts a time: benchmarks are not tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bench import command as bench_command
from bench import load_benchmarks
from bench.report import build_report, markdown, write_report
from bench.runner import (
    BenchContext,
    BenchmarkSpec,
    Criterion,
    Result,
    Target,
    interleaved,
    measured,
    median,
    parse_only,
    percentile,
    ratio,
    run_benchmarks,
    sort_ids,
    unavailable,
)

ALL_IDS = ["B1", "B1r", *(f"B{n}" for n in range(2, 12))]  # B1r: B1 with replicas


def spec(target: Target) -> BenchmarkSpec:
    return BenchmarkSpec("BX", "synthetic", target, lambda context: None)


def test_every_benchmark_of_the_design_is_registered() -> None:
    assert sort_ids(load_benchmarks()) == ALL_IDS


def test_the_driftline_command_has_bench_through_its_entry_point() -> None:
    from services.cli.main import app

    runner = CliRunner()
    shown = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for option in ("--only", "--quick", "--out", "--repetitions", "reports/bench"):
        assert option in shown.output
    refused = runner.invoke(app, ["bench", "--only", "B1,B99"])
    assert refused.exit_code == 2 and "B99" in refused.output


def test_baseline_and_candidate_alternate_abba_and_medians_come_from_each_side() -> None:
    timings = {"baseline": iter([10.0, 12.0, 11.0]), "candidate": iter([5.0, 7.0, 6.0])}
    calls: list[tuple[str, int]] = []

    def run(side: str, rep: int) -> float:
        calls.append((side, rep))
        return next(timings[side])

    baselines, candidates = interleaved(run, 3)  # type: ignore[arg-type]
    assert calls == [
        ("baseline", 0),
        ("candidate", 0),
        ("candidate", 1),
        ("baseline", 1),
        ("baseline", 2),
        ("candidate", 2),
    ]
    assert baselines == [10.0, 12.0, 11.0] and candidates == [5.0, 7.0, 6.0]
    assert median(baselines) == 11.0 and median(candidates) == 6.0
    assert ratio(median(candidates), median(baselines)) == pytest.approx(6 / 11)


def test_percentile_ratio_and_medians_on_edge_cases() -> None:
    assert percentile(list(range(101)), 0.99) == pytest.approx(99.0)
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert math.isnan(percentile([], 0.99)) and math.isnan(median([]))
    assert ratio(1.0, 0.0) is None and ratio(None, 2.0) is None and ratio(3.0, None) is None


def test_targets_decide_met_from_every_measured_criterion() -> None:
    b1 = Target(
        "ratio >= 0.5 and >= 10,000 events/s",
        [Criterion("ratio", ">=", 0.5), Criterion("figure", ">=", 10_000)],
    )
    fast_but_relative_slow = measured(
        spec(b1), figure=20_000, unit="events/s", baseline=50_000, repetitions=3
    )
    assert fast_but_relative_slow.ratio == pytest.approx(0.4)
    assert fast_but_relative_slow.met is False
    both = measured(spec(b1), figure=20_000, unit="events/s", baseline=30_000, repetitions=3)
    assert both.met is True
    slow = measured(spec(b1), figure=5_000, unit="events/s", baseline=6_000, repetitions=3)
    assert slow.met is False

    lower_is_better = Target("ratio <= 3", [Criterion("ratio", "<=", 3.0)])
    assert measured(spec(lower_is_better), figure=2.0, unit="ms", baseline=1.0, repetitions=1).met
    assert not measured(
        spec(lower_is_better), figure=4.0, unit="ms", baseline=1.0, repetitions=1
    ).met

    absolute = Target("<= 3 GB", [Criterion("figure", "<=", 3.0)])
    footprint = measured(spec(absolute), figure=1.2, unit="GB", baseline=None, repetitions=1)
    assert footprint.ratio is None and footprint.met is True

    exact = Target("exactly equal", [Criterion("equal", "==", True)])
    assert not measured(
        spec(exact), figure=0.8, unit="auc", baseline=0.8, repetitions=1, extra={"equal": False}
    ).met
    # A criterion not measured (the serving half of B7) decides nothing either way.
    partial = Target(
        "ratio <= 2; rps kept >= 0.9",
        [Criterion("ratio", "<=", 2.0), Criterion("rps_kept", ">=", 0.9)],
    )
    assert measured(spec(partial), figure=1.0, unit="s", baseline=1.0, repetitions=1).met is True


def test_only_parses_ids_and_refuses_unknown_ones() -> None:
    assert parse_only("b5,B1, B1", ALL_IDS) == ["B1", "B5"]
    assert parse_only(None, ALL_IDS) == ALL_IDS
    with pytest.raises(ValueError, match="B12"):
        parse_only("B1,B12", ALL_IDS)


def test_a_benchmark_that_raises_becomes_a_failed_line_and_the_others_still_run(
    tmp_path: Path,
) -> None:
    from bench import runner

    def broken(context: BenchContext) -> Result:
        raise RuntimeError("the broker fell over")

    def fine(context: BenchContext) -> Result:
        return unavailable(runner.REGISTRY["T2"], "not available: nothing")

    target = Target("t", [])
    runner.REGISTRY["T1"] = BenchmarkSpec("T1", "broken", target, broken)
    runner.REGISTRY["T2"] = BenchmarkSpec("T2", "fine", target, fine)
    try:
        context = BenchContext(quick=True, repetitions=1, workdir=tmp_path)
        results = list(run_benchmarks(["T1", "T2"], context))
    finally:
        del runner.REGISTRY["T1"], runner.REGISTRY["T2"]
    assert [r.status for r in results] == ["failed", "unavailable"]
    assert "the broker fell over" in results[0].notes


def test_report_has_every_requested_id_and_marks_unavailable_ones(tmp_path: Path) -> None:
    registry = load_benchmarks()
    results = []
    for id in ALL_IDS:
        if id in ("B5", "B8"):
            results.append(unavailable(registry[id], "not available: services/inference missing"))
        else:
            results.append(
                measured(registry[id], figure=2.0, unit="x", baseline=1.0, repetitions=3)
            )
    json_path, md_path = write_report(results, tmp_path / "out", quick=False, repetitions=3)
    report = json.loads(json_path.read_text())
    assert [line["id"] for line in report["results"]] == ALL_IDS
    by_id = {line["id"]: line for line in report["results"]}
    assert by_id["B5"]["status"] == "unavailable" and by_id["B5"]["figure"] is None
    assert by_id["B5"]["met"] is None and "services/inference" in by_id["B5"]["notes"]
    assert by_id["B1"]["ratio"] == 2.0 and by_id["B1"]["met"] is False
    assert by_id["B4"]["met"] is True  # ratio 2 <= 3
    for key in ("cores", "memory_gb", "cpu_model"):
        assert report["machine"][key]
    assert report["date"] and "git_commit" in report

    table = md_path.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| B")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {id}" for id in ALL_IDS]
    b5 = next(row for row in rows if row.startswith("| B5 "))
    assert "| unavailable |" in b5 and "not available" in b5
    assert markdown(build_report(results, quick=True, repetitions=1), results).count("| B") == len(
        ALL_IDS
    )


@pytest.mark.slow
def test_a_quick_real_run_through_the_command_writes_the_report(tmp_path: Path) -> None:
    app = typer.Typer()
    bench_command.register(app)

    @app.command()
    def other() -> None:  # a second command, so that "bench" is a subcommand
        pass

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["bench", "--only", "B3,B4,B5", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    by_id = {line["id"]: line for line in report["results"]}
    assert sorted(by_id) == ["B3", "B4", "B5"]
    # B3: the trainer's prequential metrics equal river's, to the last digit.
    assert by_id["B3"]["status"] == "measured" and by_id["B3"]["met"] is True
    assert by_id["B3"]["figure"] == by_id["B3"]["baseline"]
    assert "all exactly equal" in by_id["B3"]["notes"]
    # B4: both sides measured, the ratio is theirs.
    b4 = by_id["B4"]
    assert b4["status"] == "measured" and b4["figure"] > 0 and b4["baseline"] > 0
    assert b4["ratio"] == pytest.approx(b4["figure"] / b4["baseline"])
    assert by_id["B5"]["status"] == "measured"
    assert "| B4 | feature read |" in (out / "report.md").read_text()
