"""The console's HTTP surface without a broker: the page, bad requests, the report guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from schemas.events import DriftAlert, Window
from schemas.usecase import load_usecase
from services.common.settings import CommonSettings
from services.telemetry.console import Console
from services.telemetry.windows import Telemetry
from tests.conftest import USECASES


def console(home: Path, api_key: str | None = None) -> tuple[Console, Telemetry]:
    settings = CommonSettings(home=home, usecases_dir=USECASES)
    telemetry = Telemetry(settings, {"credit": load_usecase(USECASES / "credit.yaml")})
    producer: Any = None  # no test here gets as far as publishing
    return Console(telemetry, producer, home, api_key=api_key), telemetry


def alert(alert_id: str, report: Path) -> DriftAlert:
    return DriftAlert(
        usecase="credit", alert_id=alert_id, kind="data", severity="warning", method="ks",
        window=Window(rows=10), report_path=str(report),
    )  # fmt: skip


async def test_page_document_and_refusals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inside = home / "drift_detector" / "reports" / "credit" / "data-in.html"
    inside.parent.mkdir(parents=True)
    inside.write_text("<html>inside</html>")
    outside = tmp_path / "secret.html"
    outside.write_text("not for the console")
    app, telemetry = console(home, api_key="k")
    story = telemetry.stories["credit"]
    story.observe(alert("in", inside), at=0)
    story.observe(alert("out", outside), at=0)
    async with TestClient(TestServer(app.app())) as client:
        page = await client.get("/")
        assert page.status == 200 and "console.js" in await page.text()
        script = await client.get("/static/console.js")
        assert script.status == 200 and "EventSource" in await script.text()
        document = await (await client.get("/api/telemetry")).json()
        assert list(document) == ["credit"]
        assert [a["report"] for a in document["credit"]["alerts"]] == [
            "/reports/out",
            "/reports/in",
        ]
        assert (await client.get("/api/telemetry/nope")).status == 404
        assert "inside" in await (await client.get("/reports/in")).text()
        assert (await client.get("/reports/out")).status == 404  # not under DRIFTLINE_HOME
        assert (await client.get("/reports/unknown")).status == 404
        assert (await client.post("/api/credit/retrain")).status == 401  # the key is set
        keyed = {"X-API-Key": "k"}
        assert (await client.post("/api/credit/explode", headers=keyed)).status == 404
        assert (await client.post("/api/nope/retrain", headers=keyed)).status == 404
        refused = await client.post("/api/credit/rollback", headers=keyed)
        assert refused.status == 409 and "no earlier champion" in (await refused.json())["error"]
