"""``driftline predict`` against a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import json

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from services.cli.predict import register
from services.common.broker import free_port
from services.inference.api import create_app
from tests.inference.conftest import Stack, raw_events, request_fields, until

pytestmark = pytest.mark.integration


async def test_predict_verb_through_a_real_server(serve, stack: Stack, monkeypatch) -> None:
    v1 = stack.models["v1"]
    served = await serve(api_key="k3y")
    await served.publish(v1.promotion(served.name))
    await until(lambda: served.service.models.serving(served.name).champion is not None)
    port = free_port()
    config = uvicorn.Config(
        create_app(served.service, manage=False), host="127.0.0.1", port=port, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second verb keeps typer in sub-command mode
    event, _ = raw_events(1)[0]
    body = json.dumps({"entity_id": "c1", "features": request_fields(event)})
    url = f"http://127.0.0.1:{port}"
    try:
        monkeypatch.setenv("DRIFTLINE_API_KEY", "k3y")
        ok = await asyncio.to_thread(
            CliRunner().invoke, app, ["predict", served.name, body, "--url", url]
        )
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["model_version"] == v1.version
        explained = await asyncio.to_thread(
            CliRunner().invoke, app, ["predict", served.name, body, "--url", url, "--explain",
                                      "--top", "3"],
        )  # fmt: skip
        assert explained.exit_code == 0, explained.output
        lines = explained.stdout.splitlines()
        assert "baseline_shapley" in explained.stdout and "(expected value)" in explained.stdout
        assert any("more)" in line for line in lines)  # the rest of the features, summed
        rows = [line for line in lines if line.startswith("│") and "(" not in line]
        assert len(rows) == 3  # the top three contributions
        monkeypatch.setenv("DRIFTLINE_API_KEY", "wrong")
        denied = await asyncio.to_thread(
            CliRunner().invoke, app, ["predict", served.name, body, "--url", url]
        )
        assert denied.exit_code == 1 and "401" in denied.output
    finally:
        server.should_exit = True
        await task
