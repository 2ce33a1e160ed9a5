"""``driftline bench``: run the benchmarks, show a progress bar, write the report.

The method and the benchmarks live in the other modules of :mod:`bench`; this
module is the command line around them, which the CLI registers as a verb.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.profile import watching
from bench.report import met_word, number, write_report
from bench.runner import (
    BenchContext,
    BenchmarkSpec,
    Result,
    parse_only,
    run_benchmarks,
)
from bench.runner import Progress as BenchProgress

console = Console()
errors = Console(stderr=True)

DEFAULT_REPETITIONS = 3


class RichTask(BenchProgress):
    """A benchmark's progress shown as one rich task."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.task = progress.add_task(description, total=None)
        super().__init__(lambda steps: progress.advance(self.task, steps))

    def start(self, total: float) -> None:
        super().start(total)
        self.progress.update(self.task, total=total)

    def finish(self) -> None:
        task = self.progress.tasks[self.task]
        self.progress.update(self.task, total=task.total or 1, completed=task.total or 1)


def summary_table(results: list[Result]) -> Table:
    table = Table(title="driftline benchmarks")
    for column in ("id", "what", "figure", "baseline", "ratio", "target", "met"):
        table.add_column(column)
    for result in results:
        table.add_row(
            result.id,
            result.name,
            number(result.figure, result.unit),
            number(result.baseline),
            "-" if result.ratio is None else f"{result.ratio:.2f}",
            result.target,
            met_word(result),
        )
    return table


def run(
    ids: list[str], *, quick: bool, repetitions: int, out: Path, profile: Path | None = None
) -> list[Result]:
    """Run ``ids`` with a progress bar; write ``report.json`` and ``report.md`` into ``out``.

    With ``profile``, py-spy samples each benchmark's processes into that folder
    (:mod:`bench.profile`) and the report names each one's busiest process.
    """
    results: list[Result] = []
    tasks: list[RichTask] = []
    with (
        tempfile.TemporaryDirectory(prefix="driftline-bench-") as workdir,
        Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        overall = progress.add_task("benchmarks", total=len(ids))
        context = BenchContext(quick=quick, repetitions=repetitions, workdir=Path(workdir))

        def progress_for(spec: BenchmarkSpec) -> BenchProgress:
            task = RichTask(progress, f"{spec.id} {spec.name}")
            tasks.append(task)
            return task

        watch = None if profile is None else functools.partial(watching, directory=profile)
        for result in run_benchmarks(ids, context, progress_for, watch):
            tasks[-1].finish()
            progress.advance(overall)
            results.append(result)
    write_report(results, out, quick=quick, repetitions=repetitions)
    return results


def register(app: typer.Typer) -> None:
    """Add ``driftline bench`` to the app."""

    @app.command()
    def bench(
        only: Annotated[
            str | None, typer.Option(help="benchmark ids, e.g. B1,B5 (default: all)")
        ] = None,
        quick: Annotated[
            bool, typer.Option(help="small workloads, one repetition: a few minutes")
        ] = False,
        out: Annotated[
            Path, typer.Option(help="where report.json and report.md are written")
        ] = Path("reports/bench"),
        repetitions: Annotated[
            int | None,
            typer.Option(min=1, help=f"default {DEFAULT_REPETITIONS}, 1 with --quick"),
        ] = None,
        profile: Annotated[
            Path | None,
            typer.Option(
                help="sample every benchmark's processes with py-spy into this folder; "
                "the report shows each benchmark's busiest process and its top frames"
            ),
        ] = None,
    ) -> None:
        """Run the benchmarks of BENCHMARKS.md on the embedded stack; write reports/bench/report.*.

        Every figure is compared with a baseline measured in the same run;
        baseline and candidate are interleaved; the median of the repetitions
        is reported. A benchmark whose part does not exist yet says so.
        """
        from bench import load_benchmarks

        registry = load_benchmarks()
        try:
            ids = parse_only(only, registry)
        except ValueError as exc:
            errors.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from exc
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
        count = repetitions or (1 if quick else DEFAULT_REPETITIONS)
        results = run(ids, quick=quick, repetitions=count, out=out, profile=profile)
        console.print(summary_table(results))
        for result in results:
            if result.notes:
                console.print(f"[bold]{result.id}[/] {result.notes}", highlight=False)
        console.print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
        if any(result.status == "failed" for result in results):
            raise typer.Exit(1)
