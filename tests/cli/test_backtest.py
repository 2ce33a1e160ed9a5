"""``driftline backtest`` on the real stack: Feast's offline store, MLflow, the broker.

1,200 labelled Agrawal rows are written to a private home's offline store;
the logistic regression is back-tested against the Hoeffding tree champion
(promoted through ``driftline promote``). The verb exits 0, writes the HTML
and PNG report, publishes ``models.backtests`` with the row counts, and says
when the range asked reaches past what the store holds.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from schemas import topics
from schemas.backtests import Backtest
from schemas.events import FeatureRow, Promotion
from schemas.inputs import Label
from schemas.slices import SliceComparison
from services.cli.backtest import register as register_backtest
from services.cli.models import _publish
from services.cli.models import register as register_models
from services.common import featurestore
from tests.registry.conftest import ROWS, START, make_spec, read_topic, register

pytestmark = pytest.mark.integration


def fill_store(home: Path, spec: Any) -> None:
    """The rows as ingestion and the features service would have written them."""
    settings = featurestore.FeatureStoreSettings(home=home)
    store = featurestore.open_store(settings, [spec])
    rows = [
        FeatureRow(usecase=spec.name, source_event_id=f"e{i:05d}", entity_id=f"c{i % 40}",
                   event_timestamp=START + timedelta(seconds=i), features=x)
        for i, (x, _) in enumerate(ROWS)
    ]  # fmt: skip
    labels = [
        Label(event_id=f"e{i:05d}", label=y, timestamp=START + timedelta(seconds=i + 1))
        for i, (_, y) in enumerate(ROWS)
    ]
    featurestore.write_features(store, home, spec, rows, "part-0")
    featurestore.write_labels(home, spec, labels, "labels-0")


@pytest.fixture
def cli(bootstrap: str, home: Path, unique: str, tmp_path: Path) -> Any:
    """The models and backtest verbs on a fresh app, a private home and use-case directory."""
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    spec = make_spec(unique)
    (usecases / f"{unique}.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True))
    )
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """driftline (test)."""

    register_models(app)
    register_backtest(app)
    env = {"DRIFTLINE_BOOTSTRAP": bootstrap, "DRIFTLINE_HOME": str(home),
           "DRIFTLINE_USECASES_DIR": str(usecases), "COLUMNS": "200"}  # fmt: skip

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env)

    invoke.spec = spec  # type: ignore[attr-defined]
    return invoke


def test_backtest_against_the_champion(cli: Any, bootstrap: str, home: Path, unique: str) -> None:
    spec = cli.spec
    fill_store(home, spec)
    linear = register(home, spec, "linear")
    tree = register(home, spec, "tree")
    model = f"{unique}:{linear.model_version}"
    result = cli("backtest", unique, "--model", model)
    assert result.exit_code == 1 and "no champion" in result.output
    assert cli("promote", unique, tree.model_version).exit_code == 0

    result = cli("backtest", unique, "--model", model, "--against", "champion")
    assert result.exit_code == 0, result.output
    assert f"on {len(ROWS)} of {len(ROWS)} stored rows" in result.output
    html = Path(re.search(r"report: (\S+)", result.output).group(1))  # type: ignore[union-attr]
    png = Path(re.search(r"plot: +(\S+)", result.output).group(1))  # type: ignore[union-attr]
    assert html.is_file() and png.stat().st_size > 1000
    assert html.parent.parent == (home / "backtests" / unique).resolve()
    page = html.read_text()
    assert "metrics.png" in page and f"{unique} v{tree.model_version} (champion)" in page

    # a range reaching before the store's first row: said, and the rows there counted
    result = cli("backtest", unique, "--model", model,
                 "--from", "2025-12-31T23:00", "--to", "2026-01-01T00:09:59")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "on 600 of 600 stored rows" in result.output
    assert "the store holds no labelled rows before 2026-01-01T00:00:00+00:00" in result.output

    result = cli("backtest", unique, "--model", model, "--from", "2026-02-01")
    assert result.exit_code == 1 and "no labelled rows in the store" in result.output
    assert cli("backtest", unique, "--model", "nocolon").exit_code == 2

    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    found = asyncio.run(read_topic(bootstrap, topics.MODELS_BACKTESTS, ours, 2))
    whole, part = (Backtest.model_validate(v) for v in found)
    assert (whole.model_version, whole.against_version) == (
        linear.model_version, tree.model_version,
    )  # fmt: skip
    assert whole.against_role == "champion" and whole.requested_by == "cli"
    assert whole.rows == whole.rows_scored == len(ROWS) and whole.missing is None
    assert whole.covered.rows == len(ROWS) and whole.covered.start == START
    assert whole.winner == "against"  # the tree beats the logistic regression
    assert whole.model_score is not None and whole.against_score is not None
    assert whole.model_score < whole.against_score
    assert sum(bucket.rows for bucket in whole.buckets) == len(ROWS)
    assert whole.report_html == str(html)
    assert part.rows == 600 and part.missing is not None


def test_models_shows_the_latest_decisions_metric_per_slice(
    cli: Any, bootstrap: str, unique: str
) -> None:
    decision = Promotion(
        usecase=unique, action="reject", model_name=unique, model_version="3", reason="slice",
        slice_scores={"age_band": {
            "age>=60": SliceComparison(rows=128, candidate=0.9129, champion=0.9567),
        }},
    )  # fmt: skip
    asyncio.run(_publish(bootstrap, topics.PROMOTIONS, decision))
    result = cli("models", unique)
    assert result.exit_code == 0, result.output
    assert "roc_auc per slice" in result.output  # the table's title (wrapped to its width)
    row = next(line for line in result.output.splitlines() if "age>=60" in line)
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")] == [
        "age_band",
        "age>=60",
        "128",
        "0.9129",
        "0.9567",
    ]
