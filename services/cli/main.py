"""The ``driftline`` command line.

Users publish events, watch topics, query the inference service and run the
stack from here. Every verb is a thin layer over ``services.common`` and the
event contracts in ``schemas``; nothing here is needed by a service.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.syntax import Syntax

from services.common.settings import CommonSettings

app = typer.Typer(
    name="driftline",
    help="driftline: a streaming MLOps system whose services talk over Kafka topics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(help="Event contracts.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
topics_app = typer.Typer(help="Topics on the broker.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

console = Console()
errors = Console(stderr=True)


def settings() -> CommonSettings:
    return CommonSettings()


@app.command()
def broker() -> None:
    """Run the embedded Kafka-compatible broker alone, at DRIFTLINE_BOOTSTRAP."""
    import signal
    import threading

    from services.common.broker import EmbeddedBroker

    config = settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log = config.service_home("broker") / "tansu.log"
    with EmbeddedBroker(config.bootstrap, log_path=log) as running:
        console.print(
            f"broker listening at [bold]{running.bootstrap}[/] (log: {log}); Ctrl-C stops"
        )
        while not stop.is_set():
            if running.process is None or running.process.poll() is not None:
                errors.print("[red]the broker exited on its own[/]")
                raise typer.Exit(1)
            stop.wait(0.5)
    console.print("broker stopped")


@app.command()
def publish(
    topic: Annotated[str, typer.Argument(help="topic to publish to, e.g. credit.raw")],
    file: Annotated[
        Path | None, typer.Argument(help="JSON lines file; standard input when omitted")
    ] = None,
) -> None:
    """Publish JSON lines from FILE (or stdin) to TOPIC; bad lines are reported and skipped."""
    from services.cli.publish import parse_lines, publish_objects

    if file is not None and not file.exists():
        errors.print(f"[red]{file}: no such file[/]")
        raise typer.Exit(2)
    lines = file.read_text().splitlines() if file is not None else sys.stdin.read().splitlines()
    parsed = parse_lines(lines)
    for number, problem in parsed.problems:
        errors.print(f"line {number}: {problem}; skipped", highlight=False)
    config = settings()
    sent = asyncio.run(publish_objects(config.bootstrap, topic, parsed.objects, config.partitions))
    skipped = len(parsed.problems)
    console.print(f"published {sent} message(s) to {topic}; skipped {skipped}", highlight=False)
    if skipped:
        raise typer.Exit(1)


@app.command()
def watch(
    topic: Annotated[str, typer.Argument(help="topic to tail, e.g. drift.alerts")],
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest message")] = False,
    max_messages: Annotated[
        int | None, typer.Option("--max", help="stop after N messages", min=1)
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="stop after S seconds without a new message", min=0)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
) -> None:
    """Tail TOPIC: pretty by default, JSON lines with --json."""
    from services.cli.watch import watch_topic

    def show(record: Any, value: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            return
        header = f"[bold]{record.topic}[/] partition={record.partition} offset={record.offset}"
        console.print(header, highlight=False)
        text = json.dumps(value, indent=2) if not isinstance(value, str) else value
        console.print(Syntax(text, "json", theme="ansi_dark", word_wrap=True))

    try:
        asyncio.run(
            watch_topic(
                settings().bootstrap,
                topic,
                show,
                from_beginning=from_beginning,
                max_messages=max_messages,
                idle_timeout=timeout,
            )
        )
    except KeyboardInterrupt:
        pass


@app.command()
def up(
    demo: Annotated[str | None, typer.Option(help="stream this demo use case once up")] = None,
    external_broker: Annotated[
        bool, typer.Option(help="a broker already runs at DRIFTLINE_BOOTSTRAP; do not start one")
    ] = False,
    events: Annotated[int, typer.Option(help="demo events to stream")] = 100_000,
    rate: Annotated[float, typer.Option(help="demo events per second")] = 40.0,
    drift_at: Annotated[
        int | None, typer.Option(help="demo event at which drift starts (default: 3,000)")
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="comma-separated services to run (default: all)")
    ] = None,
    replicas: Annotated[
        str | None,
        typer.Option(
            help="processes of stateless services, e.g. ingestion=2,features=2,inference=2 "
            "(group mode; DRIFTLINE_PARTITIONS sets the topics' partitions)"
        ),
    ] = None,
    view: Annotated[
        bool,
        typer.Option(
            help="with --demo: the live view, logs to DRIFTLINE_HOME/logs (default on a "
            "terminal); --no-view interleaves the services' logs instead"
        ),
    ] = sys.stdout.isatty(),
) -> None:
    """Start the broker, create the topics, run every service; Ctrl-C stops all."""
    from schemas import topics
    from services.cli.up import (
        Supervisor,
        discover_services,
        parse_replicas,
        replicas_warning,
        run_until_stopped,
        start_services,
    )
    from services.common.broker import EmbeddedBroker
    from services.common.bus import ensure_topics, wait_for_broker
    from services.common.epoch import log_epoch

    config = settings()
    usecases = config.load_usecases()
    if demo is not None and demo not in usecases:
        errors.print(f"[red]no use case {demo!r}; known: {sorted(usecases)}[/]")
        raise typer.Exit(2)
    available = discover_services()
    chosen = available if only is None else [s for s in only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        errors.print(f"[red]unknown services {unknown}; known: {available}[/]")
        raise typer.Exit(2)
    try:
        counts = parse_replicas(replicas, available)
    except ValueError as exc:
        errors.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    warning = replicas_warning(counts, config.partitions)
    if warning is not None:
        errors.print(f"[yellow]warning: {warning}[/]", highlight=False)
    live = view and demo is not None
    port = os.environ.get("DRIFTLINE_PORT", "8000")
    inference_url = os.environ.get("DRIFTLINE_INFERENCE_URL", f"http://127.0.0.1:{port}")
    log_dir = config.home / "logs"
    embedded = None
    if not external_broker:
        log = config.service_home("broker") / "tansu.log"
        embedded = EmbeddedBroker(config.bootstrap, log_path=log).start()
        console.print(f"embedded broker at [bold]{embedded.bootstrap}[/]")
    supervisor = Supervisor(console, dict(os.environ), log_dir=log_dir if live else None)
    live_view = None
    try:
        asyncio.run(wait_for_broker(config.bootstrap, config.broker_wait_seconds))
        created = asyncio.run(
            ensure_topics(
                config.bootstrap,
                topics.all_topics(usecases),
                config.partitions,
                retention_ms=config.retention_ms,
            )
        )
        console.print(f"topics ready ({len(created)} created) for use cases {sorted(usecases)}")
        epoch = asyncio.run(log_epoch(config.bootstrap))
        if embedded is not None:
            console.print(
                f"log epoch {epoch[:8]}: the embedded broker keeps nothing; the services resume "
                f"from {config.home} (checkpoints, Feast) and MLflow (the champion)"
            )
        start_services(supervisor, chosen, inference_url, counts)
        if demo is not None:
            drift = drift_at if drift_at is not None else 3000
            argv = [sys.executable, "-m", "services.cli", "demo", demo, "--events", str(events)]
            argv += ["--rate", str(rate), "--drift-at", str(drift)]
            if "inference" in chosen:
                argv += ["--predict-url", inference_url]
            supervisor.start("demo", argv)
        if live:
            from services.cli.live import LiveThread, console_url

            console.print(f"logs: {log_dir}/<service>.log; the live view starts now")
            shown = [demo or "", *sorted(set(usecases) - {demo})]  # the demo's block first
            live_view = LiveThread(console_url(), usecases=shown).start()
        status = run_until_stopped(supervisor)
    except KeyboardInterrupt:  # Ctrl-C while starting: what started stops, cleanly
        status = 0
    finally:
        if live_view is not None:
            live_view.stop()
        console.print("stopping…")
        supervisor.stop()
        if embedded is not None:
            embedded.stop()
    raise typer.Exit(status)


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics the services declare they read and write, for the configured use cases."""
    from schemas import topics
    from services.common.bus import ensure_topics, wait_for_broker

    config = settings()
    names = topics.all_topics(config.load_usecases())
    asyncio.run(wait_for_broker(config.bootstrap, config.broker_wait_seconds))
    created = asyncio.run(
        ensure_topics(config.bootstrap, names, config.partitions, retention_ms=config.retention_ms)
    )
    console.print(f"{len(created)} topic(s) created, {len(names) - len(created)} already there")
    for name in created:
        console.print(f"  {name}")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="where to write the JSON Schemas")],
) -> None:
    """Write each event's JSON Schema (and the use-case spec's) into DIRECTORY."""
    from schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        console.print(f"wrote {path}")


def main() -> None:
    """Entry point of the ``driftline`` console script: errors become one clear line."""
    from aiokafka.errors import KafkaError

    from services.common.errors import DriftlineError

    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    try:
        app(standalone_mode=True)
    except (DriftlineError, KafkaError, ValueError) as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)


def _register_commands() -> None:
    """Verbs that live in their own modules add themselves to the app; a package beside
    the CLI (the benchmark suite, ``driftline bench``) plugs its verbs in through the
    ``driftline.commands`` entry points of pyproject.toml, so the CLI never imports it."""
    from importlib.metadata import entry_points

    from services.cli import backtest as backtest_commands
    from services.cli import demo as demo_commands
    from services.cli import features as features_commands
    from services.cli import live as live_commands
    from services.cli import models as model_commands
    from services.cli import predict as predict_commands
    from services.cli import status as status_commands

    backtest_commands.register(app)
    demo_commands.register(app)
    features_commands.register(app)
    live_commands.register(app)
    model_commands.register(app)
    predict_commands.register(app)
    status_commands.register(app)
    for plugin in entry_points(group="driftline.commands"):
        plugin.load()(app)


_register_commands()
