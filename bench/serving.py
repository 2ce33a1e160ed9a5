"""B5 serving: ``/v1/predict`` under fixed concurrency against a no-op JSON endpoint.

The candidate is the real inference service (``python -m services.inference``,
uvicorn with uvloop and httptools, one worker) on a private broker and home,
serving a real champion: a river model learned on a few hundred credit rows
by the online trainer's own :func:`~services.online_trainer.learn_stream`,
registered in MLflow and promoted by a ``Promotion`` event on
``models.promotions``. The baseline is a FastAPI app in the same uvicorn
configuration whose one ``POST`` reads the body and answers a small JSON
object (:mod:`bench.noop`).

Beside it, the same service serves an MLP champion three ways, each the
champion of a use case of its own (:mod:`bench.runtimes`): torch, ONNX
(onnxruntime) and ONNX with int8 weights. B5 drives each with the same
request and load in the same run and reports the three rows side by side
(``details["mlp"]``); the figure and the target stay the river champion's.

Both are driven by the same load generator, :func:`bench.load.drive`
(raw keep-alive HTTP/1.1 connections in a closed loop). It shares the machine's
cores with the server (and, for the candidate, with the broker the prediction
log writes to): the report's notes say so.

The server this module starts is shared, through the bench context, with the
serving half of B7 (:mod:`bench.drift`), which loads it while a
drift check loops in another process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import workload
from bench.load import LoadStats, drive
from bench.pending import not_available
from bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Side,
    Target,
    benchmark,
    interleaved,
    measured,
    median,
    spec_of,
)
from bench.runtimes import RUNTIMES, mlp_champions, usecase_of
from bench.serving_costs import ITEMS, prediction_log_cost, size_row, sizes_note
from bench.stack import ROOT, BenchStack, StackError, publish, wait_for
from schemas import topics
from schemas.events import Promotion
from services.common.broker import free_port

USECASE = "b5"
NOOP_PATH = "/v1/noop/b5"
CONCURRENCY = 16
MODEL_ROWS = 400
WARMUP_SECONDS = 1.0
RIG_KEY = "serving-rig"
SIDES: tuple[Side, ...] = ("baseline", "candidate")


# ---- the rig: broker, inference service with a champion, no-op server -------------


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def register_champion(stack: BenchStack, usecase: str, rows: int = MODEL_ROWS) -> Promotion:
    """Learn a river model on ``rows`` credit rows, register it, return its promotion."""
    from services.common import tracking
    from services.online_trainer import learn_stream

    spec = stack.usecase(usecase)
    load = workload(spec, rows, seed=5)
    model, _ = learn_stream(spec, load.rows, load.labels)
    scratch = stack.workdir / "models"
    return tracking.register_champion(
        stack.home, usecase, model, usecase, scratch, reason="bench champion"
    )


@dataclass
class ServingRig:
    """The running servers B5 and B7 load, and the request they are sent."""

    stack: BenchStack
    usecase: str
    inference_port: int
    noop_port: int
    body: bytes
    champion_version: str
    noop: subprocess.Popen[bytes]
    mlp_usecases: dict[str, str]  # runtime -> the use case whose champion it serves
    trained: Any  # the batch TrainingOutcome the MLP champions came from (B11 times it)
    many_body: bytes = b""  # ITEMS items, each the body's fields for another entity

    @property
    def predict_path(self) -> str:
        return f"/v1/predict/{self.usecase}"

    def load(
        self,
        side: Side,
        *,
        concurrency: int,
        seconds: float,
        usecase: str | None = None,
        body: bytes | None = None,
    ) -> LoadStats:
        """Load the no-op (baseline) or inference (candidate: ``usecase``, B5's river one)."""
        if side == "baseline":
            return drive(
                self.noop_port, NOOP_PATH, self.body, concurrency=concurrency, seconds=seconds
            )
        return drive(
            self.inference_port,
            f"/v1/predict/{usecase or self.usecase}",
            body or self.body,
            concurrency=concurrency,
            seconds=seconds,
        )

    def close(self) -> None:
        if self.noop.poll() is None:
            self.noop.send_signal(signal.SIGTERM)
            try:
                self.noop.wait(10)
            except subprocess.TimeoutExpired:
                self.noop.kill()
                self.noop.wait()
        self.stack.close()


def start_rig(workdir: Path, timeout: float = 180.0) -> ServingRig:
    """Broker, inference service with a promoted champion, and the no-op server."""
    from services.demo.traffic import predict_body

    stack = BenchStack(workdir)
    noop: subprocess.Popen[bytes] | None = None
    try:
        stack.start_broker()
        spec = stack.add_usecase(USECASE)
        promotion = register_champion(stack, USECASE)
        mlp_usecases: dict[str, str] = {r: usecase_of(USECASE, r) for r in RUNTIMES}
        for name in mlp_usecases.values():
            stack.add_usecase(name)
        mlp, trained = mlp_champions(stack.home, spec, USECASE, stack.workdir / "mlp")
        events = [p.model_dump_json().encode() for p in [promotion, *mlp.values()]]
        asyncio.run(publish(stack.bootstrap, topics.MODELS_PROMOTIONS, events))
        stack.start("inference")
        inference_port = stack.ports["inference"]
        noop_port = free_port()
        log = (stack.logs / "noop.log").open("ab")
        noop = subprocess.Popen(
            [sys.executable, "-m", "bench.noop", str(noop_port)],
            cwd=ROOT,
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        stack.wait_ready(["inference"], timeout)
        base = f"http://127.0.0.1:{inference_port}"

        wanted = {USECASE: promotion, **{mlp_usecases[r]: p for r, p in mlp.items()}}

        def champions_loaded() -> bool:
            for usecase, event in wanted.items():
                champion = get_json(f"{base}/v1/models/{usecase}").get("champion")
                if not (champion and champion["model_version"] == event.model_version):
                    return False
            return True

        if not wait_for(champions_loaded, timeout, interval=0.2):
            raise StackError(f"inference never loaded the champions: {stack.tail('inference')}")
        for runtime, usecase in mlp_usecases.items():
            served = get_json(f"{base}/v1/models/{usecase}")["champion"]["runtime"]
            if served != runtime:
                raise StackError(
                    f"{usecase}: the MLP champion is served by {served}, not {runtime}"
                )
        if not wait_for(lambda: http_ok(f"http://127.0.0.1:{noop_port}/readyz"), 60, 0.2):
            raise StackError("the no-op server did not come up")
        event = workload(spec, 1, seed=11).events[0]
        body = json.dumps(predict_body(spec, event), separators=(",", ":")).encode()
        many = clean_bodies(spec, ITEMS)
        rig = ServingRig(
            stack, USECASE, inference_port, noop_port, body, promotion.model_version, noop,
            mlp_usecases, trained, json.dumps(many, separators=(",", ":")).encode(),
        )  # fmt: skip
        # Each must answer 200 (the candidates with their champions), or the load means nothing.
        probes: list[tuple[Side, str | None]] = [("baseline", None), ("candidate", None)]
        probes += [("candidate", name) for name in mlp_usecases.values()]
        for side, probed in probes:
            probe = rig.load(side, concurrency=1, seconds=0.2, usecase=probed)
            if probe.ok == 0 or probe.errors:
                raise StackError(
                    f"{probed or side} answered {probe.statuses}: {stack.tail('inference')}"
                )
        for probed in (None, *mlp_usecases.values()):  # the list request, with each champion
            probe = rig.load("candidate", concurrency=1, seconds=0.2, usecase=probed,
                             body=rig.many_body)  # fmt: skip
            if probe.ok == 0 or probe.errors:
                raise StackError(
                    f"{probed or USECASE} ({ITEMS} items) answered {probe.statuses}: "
                    f"{stack.tail('inference')}"
                )
        return rig
    except BaseException:
        if noop is not None and noop.poll() is None:
            noop.kill()
            noop.wait()
        stack.close()
        raise


def clean_bodies(spec: Any, count: int) -> list[dict[str, Any]]:
    """``count`` predict bodies of workload events that are complete and valid (answered 200)."""
    from services.common.errors import InvalidInput
    from services.common.prep import Preparer
    from services.demo.traffic import predict_body
    from services.inference.features import missing_fields

    preparer = Preparer(spec)
    bodies: list[dict[str, Any]] = []
    for event in workload(spec, count * 4, seed=11).events:
        body = predict_body(spec, event)
        try:
            preparer.prepare(event, learn=False)
        except InvalidInput:
            continue
        if not missing_fields(spec, body["features"]):
            bodies.append(body)
        if len(bodies) == count:
            return bodies
    raise StackError(f"fewer than {count} clean events in the workload")


def serving_rig(context: BenchContext) -> ServingRig:
    """The run's serving rig, started on first use and stopped after the last of B5 and B7
    in the run (B11, after B8 to B10, starts one of its own in a new directory)."""
    rig = context.cache.get(RIG_KEY)
    if rig is None:
        starts = context.cache["serving-starts"] = context.cache.get("serving-starts", 0) + 1
        rig = start_rig(Path(context.workdir) / ("serving" if starts == 1 else f"serving-{starts}"))
        # B11 starts a rig of its own after B8-B10, which run without this one beside them.
        context.keep(RIG_KEY, rig, rig.close, users=("B5", "B7"))
        # Warm both servers and every champion (first requests import and compile lazily).
        for side in SIDES:
            rig.load(side, concurrency=CONCURRENCY, seconds=WARMUP_SECONDS)
        for usecase in rig.mlp_usecases.values():
            rig.load(
                "candidate", concurrency=CONCURRENCY, seconds=WARMUP_SECONDS / 2, usecase=usecase
            )
    found: ServingRig = rig
    return found


def load_seconds(context: BenchContext) -> float:
    return float(context.cache.get("serving-seconds", 2.0 if context.quick else 5.0))


LOAD_NOTE = (
    "load: {c} keep-alive connections, closed loop, {s:g} s a side, a raw asyncio HTTP/1.1 "
    "generator in the bench process sharing the machine's {cores} cores with the server "
    "(and with the broker the prediction log writes to)"
)


def load_note(concurrency: int, seconds: float) -> str:
    import os

    return LOAD_NOTE.format(c=concurrency, s=seconds, cores=os.cpu_count())


@benchmark(
    "B5",
    "serving",
    Target(
        "RPS ratio >= 0.8, p99 overhead <= 2 ms",
        [Criterion("ratio", ">=", 0.8), Criterion("p99_overhead_ms", "<=", 2.0)],
    ),
)
def serving(context: BenchContext) -> Result:
    missing = not_available("B5", {"inference": "services/inference (the inference service)"})
    if missing is not None:
        return missing
    context.progress.start((2 + 2 * len(RUNTIMES) + 1) * context.repetitions + 2)
    rig = serving_rig(context)
    context.progress.advance()
    seconds = load_seconds(context)
    runs: dict[Side, list[LoadStats]] = {"baseline": [], "candidate": []}
    mlp_runs: dict[str, list[LoadStats]] = {runtime: [] for runtime in rig.mlp_usecases}
    many_runs: dict[str, list[LoadStats]] = {"river": [], **{r: [] for r in rig.mlp_usecases}}

    def run(side: Side, rep: int) -> float:
        stats = rig.load(side, concurrency=CONCURRENCY, seconds=seconds)
        runs[side].append(stats)
        if side == "candidate":  # the MLP rows in turn, each rep beside the river one
            for runtime, usecase in rig.mlp_usecases.items():
                found = rig.load(side, concurrency=CONCURRENCY, seconds=seconds, usecase=usecase)
                mlp_runs[runtime].append(found)
                context.progress.advance()
            # The second size: ITEMS items a request, each champion, the same connections.
            for name, usecase in (("river", rig.usecase), *rig.mlp_usecases.items()):
                found = rig.load(side, concurrency=CONCURRENCY, seconds=seconds,
                                 usecase=usecase, body=rig.many_body)  # fmt: skip
                many_runs[name].append(found)
                context.progress.advance()
        return stats.rps

    baseline_rps, candidate_rps = interleaved(run, context.repetitions, context.progress)
    sizes = {
        name: size_row(runs["candidate"] if name == "river" else mlp_runs[name], found)
        for name, found in many_runs.items()
    }
    log_cost = prediction_log_cost(rig.stack.bootstrap, rig.stack.workdir, f"{USECASE}_logcost")
    context.progress.advance()
    mlp = {
        runtime: {
            "rps": median([s.rps for s in found]),
            "p50_ms": median([s.p50_ms for s in found]),
            "p99_ms": median([s.p99_ms for s in found]),
            "errors": float(sum(s.errors for s in found)),
        }
        for runtime, found in mlp_runs.items()
    }
    mlp_note = "; ".join(
        f"{runtime} {row['rps']:,.0f} req/s p99 {row['p99_ms']:.2f} ms"
        for runtime, row in mlp.items()
    )
    p99 = {side: median([s.p99_ms for s in found]) for side, found in runs.items()}
    p50 = {side: median([s.p50_ms for s in found]) for side, found in runs.items()}
    errors = {side: sum(s.errors for s in found) for side, found in runs.items()}
    overhead = p99["candidate"] - p99["baseline"]
    return measured(
        spec_of("B5"),
        figure=median(candidate_rps),
        unit="req/s",
        baseline=median(baseline_rps),
        repetitions=context.repetitions,
        notes=f"p99 {p99['candidate']:.2f} ms vs {p99['baseline']:.2f} ms no-op "
        f"(overhead {overhead:.2f} ms); one item with request fields (preparer, river "
        f"champion, prediction logged to Kafka) vs a FastAPI no-op POST, uvicorn uvloop/"
        f"httptools 1 worker each; {load_note(CONCURRENCY, seconds)}; "
        f"non-200 answers {errors['candidate']} vs {errors['baseline']}; MLP champion "
        f"(same request, same load): {mlp_note}; {ITEMS} items a request: {sizes_note(sizes)}; "
        f"prediction log, in process: {log_cost['journal_us']:.1f} us a prediction on the "
        f"request path (journal line), {log_cost['ship_us']:.1f} us off it (validate, batch, "
        f"send, acknowledged)",
        extra={"p99_overhead_ms": overhead},
        details={
            "candidate_rps": candidate_rps,
            "baseline_rps": baseline_rps,
            "candidate_p99_ms": p99["candidate"],
            "baseline_p99_ms": p99["baseline"],
            "candidate_p50_ms": p50["candidate"],
            "baseline_p50_ms": p50["baseline"],
            "concurrency": CONCURRENCY,
            "seconds_per_side": seconds,
            "champion_version": rig.champion_version,
            "mlp": mlp,
            "items_per_request": {"1": 1, "many": ITEMS},
            "sizes": sizes,
            "prediction_log": log_cost,
        },
    )
