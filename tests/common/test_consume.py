"""At-least-once delivery against the real embedded broker, with real process deaths."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.publish import publish_objects

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[2]


def run_worker(bootstrap: str, topic: str, out: Path, expect: int, *extra: str) -> int:
    argv = [sys.executable, str(WORKER), "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--group", f"{topic}-group", "--out", str(out), "--expect", str(expect), *extra]
    return subprocess.run(argv, cwd=ROOT, timeout=120).returncode


def publish(bootstrap: str, topic: str, start: int, stop: int) -> None:
    messages = [{"event_id": f"e{i}"} for i in range(start, stop)]
    asyncio.run(publish_objects(bootstrap, topic, messages))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_before_commit_redelivers(bootstrap: str, make_topics, unique: str, tmp_path: Path):
    (topic,) = make_topics(f"{unique}.raw")
    out = tmp_path / "processed.txt"
    publish(bootstrap, topic, 0, 20)

    status = run_worker(bootstrap, topic, out, 20, "--crash-before-commit")
    assert status == -signal.SIGKILL
    assert len(lines(out)) == 20  # the side effects happened, the commit did not

    assert run_worker(bootstrap, topic, out, 20) == 0
    processed = lines(out)
    assert len(processed) == 40  # all 20 again: nothing lost
    assert sorted(set(processed)) == sorted(processed[:20])


def test_restarted_after_commit_resumes_after_its_last_offset(
    bootstrap: str, make_topics, unique: str, tmp_path: Path
):
    (topic,) = make_topics(f"{unique}.raw")
    out = tmp_path / "processed.txt"
    publish(bootstrap, topic, 0, 15)
    assert run_worker(bootstrap, topic, out, 15) == 0
    publish(bootstrap, topic, 15, 25)
    assert run_worker(bootstrap, topic, out, 10) == 0

    processed = lines(out)
    assert len(processed) == 25  # nothing processed twice
    assert len(set(processed)) == 25
    assert '{"event_id":"e24"}' in processed
