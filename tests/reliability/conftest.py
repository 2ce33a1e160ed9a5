"""The reliability suite's marker and switch.

Tests marked ``reliability`` (60-second load runs, the every-service SIGKILL
sweep) run only with ``DRIFTLINE_RELIABILITY=1`` (``make reliability``), so
``make test`` stays fast; the rest of this folder always runs.
"""

from __future__ import annotations

import os

import pytest

ENABLED = os.environ.get("DRIFTLINE_RELIABILITY") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: long fault, load and soak runs (DRIFTLINE_RELIABILITY=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="long reliability run: set DRIFTLINE_RELIABILITY=1")
    for item in items:
        if item.get_closest_marker("reliability") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.reliability.tally import summary

    lines = summary()
    if lines:
        terminalreporter.section("driftline reliability")
        for line in lines:
            terminalreporter.write_line(line)
