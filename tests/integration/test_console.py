"""The web console in a real browser: headless Chromium driven by Selenium and chromedriver.

Against a running stack (the telemetry service, ingestion turning raw events
into features, the real broker), fed with the credit demo's events, served
predictions and labels and the loop's events: the page loads, its numbers
change, the retrain button publishes a training request on
``training.requests``, and screenshots are saved under the test's temporary
directory (and to ``DRIFTLINE_CONSOLE_SCREENSHOT`` when set: that is how
``docs/console.png`` is made). ``make test`` installs chromium and
chromium-driver from the system's packages; where there are none, it skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.events import DriftAlert, ModelCandidate, Prediction, Promotion, Window
from schemas.usecase import load_usecase
from services.common.broker import free_port
from services.common.bus import ensure_topics, start_producer
from services.demo.data import demo_events
from tests.conftest import USECASES
from tests.stack import Stack, read_topic, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHA = "ab" * 32


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            f"no browser: {CHROMIUM} or {CHROMEDRIVER} missing "
            "(make test installs them with apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1500,1250")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def loop_events(uc: str, report: Path) -> list[tuple[str, bytes]]:
    """An online model learning, a first champion, a canary on trial and a drift alert."""
    online = ModelCandidate(
        usecase=uc, model_name=f"{uc}-online", model_version="3", trainer="online",
        flavor="river", metrics={"roc_auc": 0.81, "rolling_roc_auc": 0.77},
        data_window=Window(rows=2400), artifact_uri="mlflow://x/3", artifact_sha256=SHA,
    )  # fmt: skip
    first = Promotion(
        usecase=uc, action="promote", model_name=f"{uc}-online", model_version="1",
        reason="first model: roc_auc 0.89 on 500 held-out rows", artifact_sha256=SHA,
    )  # fmt: skip
    canary = Promotion(
        usecase=uc, action="canary", model_name=uc, model_version="1", traffic_share=0.2,
        reason="better than the champion, canary on 20% of live traffic", artifact_sha256=SHA,
    )  # fmt: skip
    alert = DriftAlert(
        usecase=uc, kind="data", severity="critical", method="ks", window=Window(rows=1000),
        drift_share=0.71, report_path=str(report),
        features={},
    )  # fmt: skip
    return [
        (topics.MODELS_CANDIDATES, online.model_dump_json().encode()),
        (topics.MODELS_PROMOTIONS, first.model_dump_json().encode()),
        (topics.DRIFT_ALERTS, alert.model_dump_json().encode()),
        (topics.MODELS_PROMOTIONS, canary.model_dump_json().encode()),
    ]


class Feeder(threading.Thread):
    """The demo's raw events and labels at ``rate`` a second, with a served prediction each."""

    def __init__(self, bootstrap: str, uc: str, rate: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.uc, self.rate = bootstrap, uc, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        spec = load_usecase(USECASES / "credit.yaml")
        producer = await start_producer(self.bootstrap)
        try:
            for item in demo_events(spec, events=100_000, drift_at=None):
                if self.stop.is_set():
                    return
                event_id = item.event["event_id"]
                variant = "challenger" if self.sent % 5 == 0 else "champion"
                label = int(item.label["label"])
                hit = (self.sent % 7 != 0) if variant == "challenger" else (self.sent % 3 != 0)
                p1 = 0.8 if (label == 1) == hit else 0.2
                served = Prediction(
                    usecase=self.uc, source_event_id=event_id, entity_id=item.event["entity_id"],
                    model_name=self.uc if variant == "challenger" else f"{self.uc}-online",
                    model_version="1", variant=variant, prediction=int(p1 > 0.5),  # type: ignore[arg-type]
                    probabilities={"0": 1 - p1, "1": p1}, latency_ms=2.0 + (self.sent % 9),
                )  # fmt: skip
                raw = dict(item.event)
                if self.sent % 20 == 7:  # ingestion rejects it: a dead letter with its reason
                    raw["age"] = 500
                await producer.send(topics.raw(self.uc), json.dumps(raw).encode())
                await producer.send(topics.predictions(self.uc), served.model_dump_json().encode())
                await producer.send(topics.labels(self.uc), json.dumps(item.label).encode())
                self.sent += 1
                await asyncio.sleep(1 / self.rate)
        finally:
            await producer.stop()


def test_console_in_headless_chromium(
    browser: Any, stack: Stack, unique: str, bootstrap: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    asyncio.run(ensure_topics(bootstrap, topics.all_topics([unique])))
    port = free_port()
    stack.start("telemetry", DRIFTLINE_CONSOLE_PORT=str(port))
    stack.start_and_wait("ingestion", "ingesting usecases", timeout=120)
    report = stack.home / "drift_detector" / "reports" / unique / "data-1.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html><body><h1>evidently data drift report</h1></body></html>")
    feeder = Feeder(bootstrap, unique)
    url = f"http://127.0.0.1:{port}/"
    try:
        assert wait_until(lambda: _answers(url), 90), stack.tail("telemetry")
        feeder.start()
        asyncio.run(_publish(bootstrap, loop_events(unique, report)))
        browser.get(url)
        section = f'section[data-usecase="{unique}"]'

        def text(selector: str) -> str:
            # Read in one script: the page redraws its cards every second.
            script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
            return str(browser.execute_script(script, f"{section} {selector}"))

        assert wait_until(lambda: text(".raw-seen") not in ("", "0 raw, 0 labels"), 60), (
            browser.page_source[:2000],
            stack.tail("telemetry"),
        )
        first = text(".raw-seen")
        assert wait_until(lambda: text(".raw-seen") != first, 30)  # the numbers change
        assert wait_until(lambda: float(text(".raw-rate") or 0) > 0, 30)
        assert wait_until(lambda: float(text(".features-rate") or 0) > 0, 60), stack.tail(
            "ingestion"
        )  # ingestion's output, counted in the telemetry service's windows
        assert wait_until(lambda: "canary" in text(".models"), 30)
        assert wait_until(lambda: "challenger" in text(".live"), 30)
        assert "critical" in text(".alerts") and "first champion" in text(".timeline")
        assert wait_until(lambda: "age" in text(".deadletters"), 30)  # the top reason
        href = browser.execute_script(
            "return document.querySelector(arguments[0]).href;", f"{section} .alerts a"
        )
        assert str(href).endswith("/reports/" + _alert_id(bootstrap, unique))
        time.sleep(3)  # a few more seconds of charts for the screenshot
        browser.save_screenshot(str(tmp_path / "console.png"))
        target = os.environ.get("DRIFTLINE_CONSOLE_SCREENSHOT")
        if target:
            browser.save_screenshot(target)

        browser.find_element(By.CSS_SELECTOR, f'{section} button[data-action="retrain"]').click()
        assert wait_until(lambda: "published on training.requests" in _message(browser), 20)
        event_id = _message(browser).rsplit("(", 1)[1].rstrip(")")
        requests = read_topic(bootstrap, topics.TRAINING_REQUESTS)
        mine = [r for r in requests if r["event_id"] == event_id]
        assert mine and mine[0]["usecase"] == unique and mine[0]["requested_by"] == "console"
        browser.save_screenshot(str(tmp_path / "console-after-retrain.png"))
        assert (tmp_path / "console.png").stat().st_size > 10_000
    finally:
        feeder.stop.set()
        feeder.join(10)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "api/telemetry", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _message(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, "message").text)


def _alert_id(bootstrap: str, uc: str) -> str:
    alerts = [a for a in read_topic(bootstrap, topics.DRIFT_ALERTS) if a["usecase"] == uc]
    return str(alerts[-1]["alert_id"])


async def _publish(bootstrap: str, events: list[tuple[str, bytes]]) -> None:
    producer = await start_producer(bootstrap)
    try:
        for topic, value in events:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
