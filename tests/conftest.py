"""Fixtures shared by every test: the real embedded broker, a private home, settings.

Integration tests talk to a real tansu broker started once per session on a
free port; each test gets its own topic names (``unique``) so tests never
see each other's messages.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.broker import EmbeddedBroker, free_port
from services.common.bus import ensure_topics
from tests.stack import Stack, usecase_copy

ROOT = Path(__file__).resolve().parent.parent
USECASES = ROOT / "usecases"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the whole session, on a free port."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=log) as running:
        yield running


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of one test's own, for a test that kills it and starts another on its address."""
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique prefix for topic, group and use-case names."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private DRIFTLINE_HOME."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def make_topics(bootstrap: str):  # type: ignore[no-untyped-def]
    """Create topics on the session broker: ``make_topics("a", "b")``."""

    def create(*names: str, partitions: int = 1) -> list[str]:
        asyncio.run(ensure_topics(bootstrap, names, partitions))
        return list(names)

    return create


@pytest.fixture
def stack(bootstrap: str, unique: str, tmp_path: Path) -> Iterator[Stack]:
    """Service processes on the session broker, with the credit use case copied as
    ``unique`` (a module that needs another use case defines its own ``stack``)."""
    usecase_copy(USECASES / "credit.yaml", tmp_path / "usecases", unique)
    running = Stack(bootstrap, tmp_path / "home", tmp_path / "usecases", tmp_path)
    yield running
    running.stop_all()
