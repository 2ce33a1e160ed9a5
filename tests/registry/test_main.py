"""The entry point's wiring: settings, the injected gate data, and the process itself."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from services.common.broker import free_port
from services.registry import (
    canary,
    errors,
    evaluation,
    gate,
    promoter,
    retrain,
    scoring,
    service,
)
from services.registry.__main__ import load_gate_data
from services.registry.errors import RegistryError
from services.registry.settings import RegistrySettings
from tests.conftest import ROOT
from tests.registry.conftest import gate_frame, make_spec


@pytest.mark.parametrize(
    "module", [canary, errors, evaluation, gate, promoter, retrain, scoring, service]
)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_the_gate_data_is_named_module_colon_function() -> None:
    source = load_gate_data("tests.registry.conftest:gate_data")
    assert source(make_spec("any"), None).equals(gate_frame())
    with pytest.raises(RegistryError, match="expected module:function"):
        load_gate_data("tests.registry.conftest")
    with pytest.raises(RegistryError, match="no_such_module"):
        load_gate_data("no_such_module:frame")
    with pytest.raises(RegistryError, match="no_such_function"):  # found at the first call
        load_gate_data("tests.registry.conftest:no_such_function")(make_spec("any"), None)


def test_the_gate_data_module_is_imported_at_its_first_call_not_at_start() -> None:
    """The Feast store's import (seconds) is not on a restarted registry's way to restore."""
    code = (
        "import sys; from services.registry.__main__ import load_gate_data; "
        "load_gate_data('services.common.featurestore:training_data'); "
        "print('services.common.featurestore' in sys.modules, 'feast' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.split() == ["False", "False"]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_MLFLOW_URI", "http://mlflow:5000")
    monkeypatch.setenv("DRIFTLINE_MIN_GATE_ROWS", "80")
    settings = RegistrySettings()
    assert (settings.mlflow_uri, settings.min_gate_rows) == ("http://mlflow:5000", 80)
    assert settings.consumer_group("registry") == "driftline-registry"


@pytest.mark.integration
def test_the_process_becomes_ready_and_stops_on_sigterm(
    bootstrap: str, home: Path, unique: str, tmp_path: Path
) -> None:
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    document = make_spec(unique).model_dump(mode="json", exclude_none=True)
    (usecases / f"{unique}.yaml").write_text(yaml.safe_dump(document))
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLINE_BOOTSTRAP": bootstrap,
        "DRIFTLINE_HOME": str(home),
        "DRIFTLINE_USECASES_DIR": str(usecases),
        "DRIFTLINE_HEALTH_PORT": str(port),
        "DRIFTLINE_GATE_DATA": "tests.registry.conftest:gate_data",
        "DRIFTLINE_GROUP_ID": f"{unique}-main",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.registry"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    ready = r.status == 200
            except OSError:
                time.sleep(0.2)
        assert ready, "the registry did not become ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"driftline_registry_decisions_total" in r.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
