"""The trainer's warm-up: its steps run once in the background, and a request waits for them."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd

from schemas.events import Window
from schemas.usecase import UseCase
from services.batch_trainer.warm import Warmup, trainer_steps
from services.common import tracking
from tests.batch_trainer.conftest import binary_spec


def test_wait_returns_once_every_step_ran_and_a_failure_does_not_stop_the_rest() -> None:
    release = threading.Event()
    ran: list[str] = []

    def slow() -> None:
        release.wait(10)
        ran.append("slow")

    def broken() -> None:
        raise RuntimeError("no such library")

    warmup = Warmup({"slow": slow, "broken": broken, "last": lambda: ran.append("last")}).start()
    waiter = threading.Thread(target=warmup.wait)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and ran == []  # the request is held until the warm-up is done
    release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert ran == ["slow", "last"]
    assert warmup.done == ["slow", "last"]
    assert warmup.failed == {"broken": "RuntimeError: no such library"}


def test_wait_without_start_returns() -> None:
    Warmup({"never": lambda: None}).wait()


def test_trainer_steps_open_the_experiment_and_ask_the_source_for_an_empty_window(
    tmp_path: Path,
) -> None:
    spec = binary_spec("warmed")
    asked: list[tuple[str, Window]] = []

    def source(usecase: UseCase, window: Window) -> pd.DataFrame:
        asked.append((usecase.name, window))
        return pd.DataFrame()

    steps = trainer_steps({spec.name: spec}, tmp_path, None, source)
    assert list(steps) == ["imports", "pyplot", "mlflow", "data"]
    steps["mlflow"]()
    steps["data"]()
    client = tracking.client(tmp_path)
    assert client.get_experiment_by_name(spec.name) is not None
    [(name, window)] = asked
    assert name == "warmed" and window.start == window.end
    assert window.start is not None and window.start > pd.Timestamp.now(tz="UTC")


def test_imports_leave_nothing_for_a_run_to_import_when_seeding() -> None:
    """seed_everything (every run) finds its modules loaded: none on the request's clock."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from services.batch_trainer.warm import import_all\n"
        "import_all()\n"
        "from services.batch_trainer.reproducibility import seed_everything\n"
        "before = set(sys.modules)\n"
        "seed_everything(7)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
