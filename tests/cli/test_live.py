"""The live view: the renderer on a telemetry document, and the verb against the real service."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from schemas import topics
from schemas.usecase import load_usecase
from services.cli.live import LiveThread, render, run_live
from services.common.broker import free_port
from services.common.bus import ensure_topics
from services.common.settings import CommonSettings
from services.telemetry.snapshot import snapshot
from services.telemetry.windows import Telemetry
from tests.conftest import USECASES
from tests.stack import Stack, publish_raw
from tests.telemetry.test_story import epoch, prediction, story


def scripted_document(tmp_path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """The document the telemetry service answers after the scripted story (no broker)."""
    settings = CommonSettings(home=tmp_path, usecases_dir=USECASES)
    spec = load_usecase(USECASES / "credit.yaml")
    telemetry = Telemetry(settings, {"credit": spec})
    credit = telemetry.stories["credit"]
    for event in story("credit"):
        credit.observe(event, at=event.occurred_at.timestamp())
    for i in range(3):
        credit.observe(prediction("credit", f"e{i}", 1), at=epoch(121))
        credit.observe_label(json.dumps({"event_id": f"e{i}", "label": 1}).encode(), epoch(121))
    return {"credit": snapshot(telemetry, "credit", epoch(126))}


def test_renderer_shows_champion_alert_promotion_reason_and_live_metric(tmp_path: Path) -> None:
    document = scripted_document(tmp_path)
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(render(document, now=epoch(126), source="http://x"))
    text = console.export_text()
    assert "champion: credit v1" in text  # the champion
    assert "critical data" in text and "salary_z" in text  # the alert
    assert "beats champion 0.640" in text  # the promotion reason
    assert "first champion credit-online v1" in text
    assert "rolling roc_auc 0.880" in text
    assert "champion (last 3)" in text and "accuracy 1.000" in text  # the live metric
    assert "story time 01:56" in text  # from the first event at +10 s
    assert max(len(line) for line in text.splitlines()) <= 110


def test_renderer_handles_no_document_and_a_silent_service() -> None:
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(render(None, now=0.0, footer=lambda: "services: 5 running", error="ConnectError"))
    text = console.export_text()
    assert "telemetry not answering: ConnectError" in text
    assert text.rstrip().endswith("services: 5 running")  # what ``up`` adds under the view


def test_live_thread_starts_and_stops_without_a_service() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = io.StringIO()
    view = LiveThread(url, console=Console(file=out, width=110)).start()
    time.sleep(1.0)
    assert view.stop() is None and view.error is None
    assert "telemetry not answering" in out.getvalue()


@pytest.mark.integration
def test_live_reads_every_usecase_from_the_telemetry_service(
    stack: Stack, unique: str, bootstrap: str
) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli.live import register

    other = f"{unique}b"
    (stack.home.parent / "usecases" / f"{other}.yaml").write_text(
        (USECASES / "credit.yaml").read_text()
    )
    asyncio.run(ensure_topics(bootstrap, topics.all_topics([unique, other])))
    port = free_port()
    stack.start("telemetry", DRIFTLINE_CONSOLE_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    publish_raw(bootstrap, topics.raw(unique), [b'{"event_id": "%d"}' % i for i in range(3)])
    for event in story(unique):
        topic = {
            "model_candidate": topics.MODELS_CANDIDATES,
            "promotion": topics.MODELS_PROMOTIONS,
            "drift_alert": topics.DRIFT_ALERTS,
            "training_request": topics.TRAINING_REQUESTS,
        }[event.event_type]
        publish_raw(bootstrap, topic, [event.model_dump_json().encode()])

    stop = asyncio.Event()
    seen: list[dict] = []  # type: ignore[type-arg]

    def keep(document: dict) -> None:  # type: ignore[type-arg]
        seen.append(document)
        view = document.get(unique, {})
        if view.get("throughput", {}).get("raw", {}).get("seen") == 3 and (
            len(view["promotions"]) == 2
        ):
            stop.set()

    console = Console(record=True, width=120, file=io.StringIO())

    async def watch() -> None:
        asyncio.get_running_loop().call_later(90, stop.set)
        await run_live(url, stop, console, on_document=keep)

    asyncio.run(watch())
    last = seen[-1]
    assert sorted(last) == sorted([unique, other])  # every configured use case
    assert last[unique]["models"]["champion"]["label"] == f"{unique} v1", stack.tail("telemetry")
    assert "beats champion 0.640" in console.export_text()

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that the verb keeps its name
    register(app)
    result = CliRunner().invoke(app, ["live", unique, "--seconds", "1.5", "--url", url])
    assert result.exit_code == 0, result.output
    assert "3 seen" in result.output and other not in result.output
    unknown = CliRunner().invoke(app, ["live", "nope", "--seconds", "1", "--url", url])
    assert unknown.exit_code == 2 and "no use case ['nope']" in unknown.output
