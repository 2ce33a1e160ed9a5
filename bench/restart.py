"""B10, restart to serving: ``driftline up`` on an existing home to the first answer.

The home is what an earlier run leaves: a champion registered in MLflow with
its ``champion`` alias, and the Feast store. Each repetition starts the whole
stack with ``driftline up`` on a new embedded broker (an empty log, as every
restart of the embedded profile is) and asks ``/v1/predict`` every 50 ms until
it answers 200 with the earlier champion. The figure is the median of those
seconds; the steps (services started, inference ready, the promoter's
restore on the log, first answer) come from the same run. There is no
baseline: the target is absolute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Target,
    benchmark,
    measured,
    median,
    spec_of,
)
from bench.serving import http_ok, register_champion
from bench.stack import ROOT, BenchStack
from services.common.broker import free_port

USECASE = "b10"
TARGET = Target("<= 15 s", [Criterion("figure", "<=", 15.0)])


def prepare_home(stack: BenchStack) -> str:
    """An earlier run's home: the champion in MLflow (alias set), the feature store made."""
    from services.common import featurestore, tracking

    spec = stack.add_usecase(USECASE)
    promotion = register_champion(stack, USECASE)
    client = tracking.client(stack.home)
    client.set_registered_model_alias(
        promotion.model_name, tracking.CHAMPION, promotion.model_version
    )
    featurestore.open_store(featurestore.FeatureStoreSettings(home=stack.home), [spec])
    return promotion.model_version


def predict(port: int, body: bytes) -> dict[str, Any] | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict/{USECASE}",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except OSError:
        return None


def one_restart(stack: BenchStack, champion: str, body: bytes, timeout: float) -> dict[str, float]:
    """Start ``driftline up``, wait for the champion's first answer, stop; the steps' seconds."""
    port = free_port()
    env = {
        **stack.env(),
        "DRIFTLINE_LOG_LEVEL": "INFO",  # the promoter's restore is an INFO decision
        "DRIFTLINE_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "DRIFTLINE_PORT": str(port),
        "DRIFTLINE_INFERENCE_URL": f"http://127.0.0.1:{port}",
    }
    log = (stack.logs / "b10-up.log").open("ab")
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--no-view"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    steps: dict[str, float] = {}
    try:
        while time.monotonic() - started < timeout:
            if up.poll() is not None:
                raise RuntimeError(f"driftline up exited with {up.returncode}")
            if "ready" not in steps and http_ok(f"http://127.0.0.1:{port}/readyz"):
                steps["ready"] = time.monotonic() - started
            answer = predict(port, body)
            if answer is not None and str(answer.get("model_version")) == champion:
                steps["served"] = time.monotonic() - started
                steps.setdefault("ready", steps["served"])
                return steps
            time.sleep(0.05)
        raise RuntimeError(f"no answer with the champion in {timeout:.0f} s")
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


@benchmark("B10", "restart to serving", TARGET)
def restart_to_serving(context: BenchContext) -> Result:
    from services.demo.data import demo_events
    from services.demo.traffic import predict_body

    workdir = Path(context.workdir) / "restart"
    stack = BenchStack(workdir)
    context.progress.start(context.repetitions + 1)
    champion = prepare_home(stack)
    spec = stack.usecase(USECASE)
    event = next(iter(demo_events(spec, events=1, seed=11))).event
    body = json.dumps(predict_body(spec, event)).encode()
    context.progress.advance()
    runs = []
    for _ in range(context.repetitions):
        runs.append(one_restart(stack, champion, body, timeout=240))
        context.progress.advance()
    served = [run["served"] for run in runs]
    figure = median(served)
    return measured(
        spec_of("B10"),
        figure=figure,
        unit="s",
        baseline=None,
        repetitions=len(runs),
        notes=(
            f"driftline up (all services) on a home with a champion in MLflow, a new empty "
            f"log each time: inference ready at {median([r['ready'] for r in runs]):.1f} s, "
            f"first 200 with the champion v{champion} at {figure:.1f} s (median of {len(runs)})"
        ),
        details={"runs": runs, "champion_version": champion},
    )
