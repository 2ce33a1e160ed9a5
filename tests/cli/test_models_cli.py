"""``driftline models | promote | rollback | retrain`` publish events on the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from schemas import topics
from schemas.events import Promotion, TrainingRequest
from services.cli.models import register as register_verbs
from tests.registry.conftest import make_spec, read_topic, register

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(bootstrap: str, home: Path, unique: str, tmp_path: Path) -> Any:
    """Invoke the verbs on a fresh app, against the session broker and a private home."""
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    spec = make_spec(unique)
    document = spec.model_dump(mode="json", exclude_none=True)
    (usecases / f"{unique}.yaml").write_text(yaml.safe_dump(document))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """driftline (test)."""

    register_verbs(app)
    env = {
        "DRIFTLINE_BOOTSTRAP": bootstrap,
        "DRIFTLINE_HOME": str(home),
        "DRIFTLINE_USECASES_DIR": str(usecases),
        "COLUMNS": "200",
    }

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env)

    invoke.spec = spec  # type: ignore[attr-defined]
    return invoke


def promotions(bootstrap: str, usecase: str, count: int) -> list[Promotion]:
    found = asyncio.run(
        read_topic(bootstrap, topics.MODELS_PROMOTIONS, lambda v: v["usecase"] == usecase, count)
    )
    return [Promotion.model_validate(v) for v in found]


def test_promote_rollback_retrain_models(cli: Any, bootstrap: str, home: Path, unique: str) -> None:
    spec = cli.spec
    one = register(home, spec, "linear")
    two = register(home, spec, "tree")

    result = cli("promote", unique, "99")
    assert result.exit_code == 1 and "not in MLflow" in result.output
    result = cli("rollback", unique)
    assert result.exit_code == 1 and "no earlier champion" in result.output

    for version in (one.model_version, two.model_version):
        result = cli("promote", unique, version)
        assert result.exit_code == 0, result.output
    first, second = promotions(bootstrap, unique, 2)
    assert (first.action, first.model_version, first.previous_version) == ("promote", "1", None)
    assert (second.model_version, second.previous_version) == ("2", "1")
    assert second.artifact_sha256 == two.artifact_sha256
    assert second.artifact_uri == two.artifact_uri
    assert second.reason.startswith("manual")

    result = cli("rollback", unique)
    assert result.exit_code == 0, result.output
    rollback = promotions(bootstrap, unique, 3)[2]
    assert (rollback.action, rollback.model_version, rollback.previous_version) == (
        "rollback", one.model_version, two.model_version,
    )  # fmt: skip
    assert rollback.artifact_sha256 == one.artifact_sha256

    result = cli("retrain", unique)
    assert result.exit_code == 0, result.output
    requests = asyncio.run(
        read_topic(bootstrap, topics.TRAINING_REQUESTS, lambda v: v["usecase"] == unique, 1)
    )
    request = TrainingRequest.model_validate(requests[0])
    assert request.reason == "manual" and request.requested_by == "cli"

    result = cli("models", unique)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if f"│ {unique} │" in line]
    assert len(lines) == 2
    assert "champion" in lines[0] and "champion" not in lines[1]  # v1 after the rollback
    assert "0.7000" in lines[0]  # the metric the run logged
    assert "rollback" in result.output and "manual" in result.output

    result = cli("retrain", "nosuchcase")
    assert result.exit_code == 2 and "no use case 'nosuchcase'" in result.output
