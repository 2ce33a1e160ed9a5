"""The report: ``report.json`` (everything) and ``report.md`` (the table the README shows).

>>> from bench.runner import Result
>>> line = Result("B3", "prequential fidelity", "measured", "exactly equal",
...               figure=0.8125, unit="roc_auc", baseline=0.8125, ratio=1.0, met=True)
>>> markdown_row(line).split(" | ")[:7]
['| B3', 'prequential fidelity', '0.8125 roc_auc', '0.8125 roc_auc', '1.00', 'exactly equal', 'yes']
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.profile import markdown as profile_markdown
from bench.runner import Result

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform's word)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model and Python of the machine the figures come from."""
    import psutil

    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or None."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def build_report(results: list[Result], *, quick: bool, repetitions: int) -> dict[str, Any]:
    """The whole report as one JSON-ready object."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        "quick": quick,
        "repetitions": repetitions,
        "results": [result.as_dict() for result in results],
    }


def number(value: float | None, unit: str = "") -> str:
    """A figure for the table: whole numbers past 100, two decimals past 1, four digits below.

    >>> number(12345.678, "events/s"), number(0.000123, "s"), number(None), number(2.0)
    ('12,346 events/s', '0.000123 s', '-', '2')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        text = str(value).lower()
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif value == int(value):
        text = f"{int(value)}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def met_word(result: Result) -> str:
    """yes / no / n/a (not measured) / unavailable / failed."""
    if result.status != "measured":
        return result.status
    if result.met is None:
        return "n/a"
    return "yes" if result.met else "no"


def markdown_row(result: Result) -> str:
    cells = [
        result.id,
        result.name,
        number(result.figure, result.unit),
        number(result.baseline, result.unit if result.baseline is not None else ""),
        "-" if result.ratio is None else f"{result.ratio:.2f}",
        result.target,
        met_word(result),
        result.notes.replace("|", "\\|").replace("\n", " "),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any], results: list[Result]) -> str:
    """The report as Markdown: a header naming machine, date and commit, then the table."""
    host = report["machine"]
    mode = "quick" if report["quick"] else "full"
    lines = [
        "# driftline benchmarks",
        "",
        f"Run {report['date']} ({mode}, median of {report['repetitions']} repetition(s)) "
        f"at commit `{report['git_commit']}` on {host['cores']} cores "
        f"({host['cpu_model']}), {host['memory_gb']} GB memory.",
        "Ratios are candidate / baseline, both measured in the same run, interleaved.",
        "",
        "| id | what | figure | baseline | ratio | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
        *(markdown_row(result) for result in results),
        *profile_markdown(results),
        "",
    ]
    return "\n".join(lines)


def write_report(
    results: list[Result], out: Path, *, quick: bool, repetitions: int
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(results, quick=quick, repetitions=repetitions)
    json_path = out / "report.json"
    md_path = out / "report.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report, results))
    return json_path, md_path
