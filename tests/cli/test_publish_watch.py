"""``driftline publish`` and ``driftline watch`` as a user runs them, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def driftline(
    bootstrap: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRIFTLINE_BOOTSTRAP": bootstrap, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_published_lines_come_back_from_watch(bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"{unique}.raw"
    objects = [
        {"event_id": f"e{i}", "entity_id": f"c{i % 7}", "amount": i * 1.5} for i in range(200)
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(o) for o in objects) + "\n")

    published = driftline(bootstrap, "publish", topic, str(source))
    assert published.returncode == 0, published.stderr
    assert "published 200 message(s)" in published.stdout

    watched = driftline(
        bootstrap, "watch", topic, "--from-beginning", "--max", "200", "--timeout", "30", "--json"
    )
    assert watched.returncode == 0, watched.stderr
    assert [json.loads(line) for line in watched.stdout.splitlines()] == objects


def test_malformed_lines_are_reported_by_number_and_skipped(bootstrap: str, unique: str) -> None:
    topic = f"{unique}.raw"
    lines = [json.dumps({"n": i}) for i in range(7)]
    lines.insert(2, "{not json")
    lines.insert(5, "[1, 2, 3]")
    lines.insert(9, '"just a string"')
    result = driftline(bootstrap, "publish", topic, stdin="\n".join(lines) + "\n")
    assert result.returncode != 0
    assert "line 3: not valid JSON" in result.stderr
    assert "line 6: not a JSON object but list" in result.stderr
    assert "line 10: not a JSON object but str" in result.stderr
    assert "published 7 message(s)" in result.stdout

    watched = driftline(bootstrap, "watch", topic, "--from-beginning", "--timeout", "3", "--json")
    assert [json.loads(line)["n"] for line in watched.stdout.splitlines()] == list(range(7))


def test_watch_max_stops_early_and_timeout_stops_when_idle(bootstrap: str, unique: str) -> None:
    topic = f"{unique}.raw"
    driftline(bootstrap, "publish", topic, stdin="".join(f'{{"n": {i}}}\n' for i in range(5)))
    first_two = driftline(bootstrap, "watch", topic, "--from-beginning", "--max", "2", "--json")
    assert len(first_two.stdout.splitlines()) == 2
    pretty = driftline(bootstrap, "watch", topic, "--from-beginning", "--timeout", "2")
    assert pretty.returncode == 0
    assert pretty.stdout.count(f"{topic} partition=0 offset=") == 5


def test_an_absent_broker_is_one_clear_line(unique: str) -> None:
    result = driftline("127.0.0.1:1", "publish", f"{unique}.raw", stdin='{"n": 1}\n')
    assert result.returncode == 1
    assert "error: broker at 127.0.0.1:1 did not answer" in result.stderr
    assert "Traceback" not in result.stderr
