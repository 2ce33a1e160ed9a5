"""``driftline live UC``: the closed loop of one use case, live in the terminal.

A feeder reads the use case's five topics and the four global ones from the
beginning (no consumer group, nothing committed) into a
:class:`~services.cli.live_state.LiveState`; a Rich ``Live`` view redraws it
about four times a second: throughput, who serves and how well, drift alerts,
the loop's timeline and the promotion decisions with their gate scores.

Embedding it (``driftline up --demo credit``):

- as the main loop, in an ``asyncio`` program: ``await run_live(bootstrap,
  "credit", stop)``, with ``stop`` an ``asyncio.Event`` set on Ctrl-C;
- next to a blocking supervisor: ``view = LiveThread(bootstrap, "credit",
  spec=spec, footer=lambda: services_table()).start()``, then
  ``run_until_stopped(supervisor)`` in the main thread (it owns the signal
  handlers), then ``view.stop()``; ``view.state`` is the final state. The view
  owns the console while it runs, so children's logs must go to files.

Nothing is drawn from another thread: the feeder and the redraws share one
event loop, so the state is never read while it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.usecase import UseCase
from services.cli.live_state import LiveState, ModelRef, sparkline, top_features
from services.common.bus import ensure_topics, start_consumer, wait_for_broker

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 0.25
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
ACTION_STYLE = {
    "promote": "bold green",
    "canary": "yellow",
    "shadow": "blue",
    "reject": "red",
    "rollback": "bold magenta",
}
MILESTONE_MARK = {
    "champion": ("★", "bold green"),
    "online": ("◆", "cyan"),
    "drift": ("▲", "yellow"),
    "request": ("↻", "magenta"),
    "candidate": ("◇", "blue"),
    "promotion": ("●", "green"),
}
Footer = Callable[[], RenderableType | None]


# ---- rendering ----------------------------------------------------------------------


def render(state: LiveState, now: float | None = None, footer: Footer | None = None) -> Group:
    """The whole view of ``state`` at wall-clock ``now`` (seconds since the epoch)."""
    now = time.time() if now is None else now
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=2)
    top.add_column(ratio=3)
    top.add_row(throughput_panel(state, now), models_panel(state))
    middle = Table.grid(expand=True, padding=(0, 1))
    middle.add_column(ratio=1)
    middle.add_column(ratio=1)
    middle.add_row(drift_panel(state), timeline_panel(state))
    parts: list[RenderableType] = [header(state, now), top, middle, promotions_panel(state)]
    extra = footer() if footer is not None else None
    if extra is not None:
        parts.append(extra)
    return Group(*parts)


def header(state: LiveState, now: float) -> Text:
    text = Text()
    text.append(" driftline live ", style="bold white on blue")
    text.append(f"  {state.usecase}", style="bold")
    champion = state.champion.label if state.champion else "no champion yet"
    text.append(f"  champion: {champion}", style="green" if state.champion else "dim")
    if state.started_at is not None:
        text.append(f"  story time {_clock(now - state.started_at.timestamp())}", style="dim")
    text.append("  Ctrl-C quits", style="dim")
    return text


def throughput_panel(state: LiveState, now: float) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column(justify="right")
    grid.add_column(justify="right", style="dim")
    grid.add_row("raw events/s", f"{state.raw.rate(now):,.0f}", f"{state.raw.total:,} total")
    grid.add_row(
        "feature rows/s", f"{state.features.rate(now):,.0f}", f"{state.features.total:,} total"
    )
    grid.add_row(
        "predictions/s", f"{state.predictions.rate(now):,.0f}", f"{state.predictions.total:,} total"
    )
    grid.add_row("labels", f"{state.labels:,}", "")
    dead = Text(f"{state.deadletters:,}", style="red" if state.deadletters else "")
    grid.add_row("dead letters", dead, _share(state.deadletters, state.raw.total))
    body: list[RenderableType] = [grid]
    series = state.raw.series(now, 30)
    if any(series):
        body.append(Text(f"{sparkline([float(c) for c in series], 30)} 30 s", style="cyan"))
    if state.last_deadletter is not None:
        reason = f"{state.last_deadletter.service}: {state.last_deadletter.reason}"
        body.append(
            Text(f"last rejected: {reason}", style="dim red", overflow="ellipsis", no_wrap=True)
        )
    return Panel(Group(*body), title="throughput", border_style="cyan", box=box.ROUNDED)


def models_panel(state: LiveState) -> Panel:
    metric = state.metric
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("champion", _serving(state.champion, "bold green", "waiting for the first"))
    grid.add_row("challenger", _serving(state.challenger, "yellow", "none"))
    online = state.online
    if online is not None:
        rows = f", {online.data_window.rows:,} rows" if online.data_window.rows else ""
        grid.add_row("online model", f"{online.model_name} v{online.model_version}{rows}")
        rolling = online.metrics.get(f"rolling_{metric}")
        cumulative = online.metrics.get(metric)
        line = Text()
        if rolling is not None:
            line.append(f"rolling {metric} {rolling:.3f} ", style="bold")
        if cumulative is not None:
            line.append(f"(cumulative {cumulative:.3f}) ", style="dim")
        line.append(sparkline([v for _, v in state.online_history], 24), style="cyan")
        grid.add_row("", line)
    live = state.live_metrics()
    if live:
        line = Text()
        value = live.get(metric)
        if value is not None:
            line.append(f"{metric} {value:.3f}  ", style="bold")
        if metric != "accuracy" and "accuracy" in live:
            line.append(f"accuracy {live['accuracy']:.3f}  ", style="dim")
        line.append(sparkline([v for _, v in state.live_history], 24), style="green")
        grid.add_row(f"served (last {len(state.live.pairs)})", line)
    else:
        grid.add_row("served", Text("no labeled predictions yet", style="dim"))
    for candidate in list(state.candidates)[-2:]:
        score = candidate.metrics.get(metric)
        baseline = (candidate.baseline_metrics or {}).get(metric)
        line = Text(f"{candidate.model_name} v{candidate.model_version}")
        if score is not None:
            line.append(f"  test {metric} {score:.3f}")
        if baseline is not None:
            line.append(f"  baseline {baseline:.3f}", style="dim")
        grid.add_row("batch candidate", line)
    return Panel(grid, title="models", border_style="green", box=box.ROUNDED)


def drift_panel(state: LiveState) -> Panel:
    if not state.alerts:
        body: RenderableType = Text("no drift alerts yet", style="dim")
    else:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, style="dim")
        table.add_column(overflow="fold")
        for alert in list(state.alerts)[-3:][::-1]:
            when = f"+{_clock(state.elapsed(alert.occurred_at))}"
            head = Text()
            head.append(alert.severity, style=SEVERITY_STYLE.get(alert.severity, ""))
            head.append(f" {alert.kind} ({alert.method})")
            if alert.drift_share is not None:
                head.append(f" share {alert.drift_share:.2f}", style="dim")
            table.add_row(when, head)
            features = [
                f"{name} {verdict.score:.3g}{'*' if verdict.drifted else ''}"
                for name, verdict in top_features(alert, 4)
            ]
            if features:
                table.add_row("", Text("  ".join(features), style="yellow"))
        counts = "  ".join(f"{kind} {n}" for kind, n in sorted(state.alerts_by_kind.items()))
        body = Group(table, Text(f"alerts: {counts}  (* drifted)", style="dim"))
    return Panel(body, title="drift", border_style="yellow", box=box.ROUNDED)


def timeline_panel(state: LiveState, limit: int = 10) -> Panel:
    if not state.milestones:
        body: RenderableType = Text("waiting for the first champion", style="dim")
    else:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, style="dim", justify="right")
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        shown = state.milestones[:1] + state.milestones[1:][-(limit - 1) :]
        for milestone in shown:
            mark, style = MILESTONE_MARK[milestone.kind]
            text = milestone.text + (f" x{milestone.count}" if milestone.count > 1 else "")
            table.add_row(f"+{_clock(state.elapsed(milestone.at))}", Text(mark, style), text)
        body = table
    return Panel(body, title="loop timeline", border_style="magenta", box=box.ROUNDED)


def promotions_panel(state: LiveState, limit: int = 4) -> Panel:
    if not state.promotions:
        body: RenderableType = Text("no promotion decisions yet", style="dim")
    else:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, style="dim", justify="right")
        table.add_column(overflow="fold")
        for promotion in list(state.promotions)[-limit:][::-1]:
            head = Text()
            head.append(promotion.action, style=ACTION_STYLE.get(promotion.action, ""))
            head.append(f" {promotion.model_name} v{promotion.model_version}", style="bold")
            replaced = state.replaced.get(promotion.event_id)
            if replaced is not None:
                head.append(f" (was {replaced})", style="dim")
            elif promotion.previous_version:
                head.append(f" (champion v{promotion.previous_version})", style="dim")
            if promotion.traffic_share:
                head.append(f" {promotion.traffic_share:.0%} of traffic", style="dim")
            if promotion.scores:
                scores = "  ".join(f"{k} {_number(v)}" for k, v in promotion.scores.items())
                head.append(f"   {scores}", style="cyan")
            when = f"+{_clock(state.elapsed(promotion.occurred_at))}"
            table.add_row(when, Group(head, Text(promotion.reason, style="italic")))
        body = table
    return Panel(body, title="promotions (latest first)", border_style="green", box=box.ROUNDED)


def _serving(model: ModelRef | None, style: str, empty: str) -> Text:
    if model is None:
        return Text(empty, style="dim")
    text = Text(model.label, style=style)
    if model.role != "champion":
        share = f" {model.traffic_share:.0%}" if model.traffic_share else ""
        text.append(f" ({model.role}{share})", style="dim")
    return text


def _clock(seconds: float) -> str:
    """``mm:ss`` (or ``h:mm:ss``) of a non-negative duration.

    >>> _clock(75.4), _clock(3725), _clock(-3)
    ('01:15', '1:02:05', '00:00')
    """
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} of raw" if whole else ""


# ---- feeding ------------------------------------------------------------------------


async def feed(
    bootstrap: str,
    state: LiveState,
    stop: asyncio.Event,
    on_batch: Callable[[], None] | None = None,
    *,
    partitions: int = 1,
) -> None:
    """Read every topic of ``state`` from the beginning into it until ``stop`` is set."""
    names = state.topics()
    await ensure_topics(bootstrap, names, partitions)
    consumer = await start_consumer(bootstrap, names, None, auto_offset_reset="earliest")
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    state.observe_record(record.topic, record.value, record.timestamp / 1000.0)
            if on_batch is not None:
                on_batch()
    finally:
        await consumer.stop()


async def run_live(
    bootstrap: str,
    usecase: str,
    stop: asyncio.Event,
    console: Console | None = None,
    *,
    spec: UseCase | None = None,
    footer: Footer | None = None,
    partitions: int = 1,
    broker_wait: float = 60.0,
    state: LiveState | None = None,
) -> LiveState:
    """Show the live view of ``usecase`` until ``stop`` is set; return the last state.

    ``spec`` gives the task, primary metric and positive class (otherwise they
    are guessed from the events); ``footer`` adds a renderable under the view
    (for example the services' status when ``up`` embeds it). A caller that
    wants to read the state while the view runs passes its own ``state``.
    """
    if state is None:
        state = LiveState.for_usecase(spec) if spec is not None else LiveState(usecase)
    console = console or Console()
    await wait_for_broker(bootstrap, broker_wait)
    with Live(
        render(state, footer=footer),
        console=console,
        auto_refresh=False,
        transient=False,
    ) as live:
        feeder = asyncio.create_task(feed(bootstrap, state, stop, partitions=partitions))
        try:
            while not stop.is_set() and not feeder.done():
                live.update(render(state, footer=footer), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
        finally:
            stop.set()
            await feeder  # re-raises what stopped the feeder, if anything did
            live.update(render(state, footer=footer), refresh=True)
    return state


class LiveThread:
    """The live view in a thread of its own, for a caller whose main thread supervises."""

    def __init__(
        self,
        bootstrap: str,
        usecase: str,
        *,
        console: Console | None = None,
        spec: UseCase | None = None,
        footer: Footer | None = None,
        partitions: int = 1,
    ) -> None:
        self._bootstrap, self._usecase = bootstrap, usecase
        self._console, self._spec, self._footer = console, spec, footer
        self._partitions = partitions
        self.state = LiveState.for_usecase(spec) if spec is not None else LiveState(usecase)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="driftline-live", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> LiveThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> LiveState:
        """Stop the view and wait for it; returns its last state."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        return self.state

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_live(
                self._bootstrap,
                self._usecase,
                self._stop,
                self._console,
                spec=self._spec,
                footer=self._footer,
                partitions=self._partitions,
                state=self.state,
            )

        try:
            asyncio.run(body())
        except Exception as exc:  # reported to the caller, which decides
            logger.exception("live view stopped")
            self.error = exc
        finally:
            self._ready.set()


# ---- command line -------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``driftline live UC`` to the command line."""

    @app.command("live")
    def live(
        usecase: str = typer.Argument(..., help="use case to watch, e.g. credit"),
        seconds: float | None = typer.Option(
            None, "--seconds", min=0, help="stop after S seconds (default: until Ctrl-C)"
        ),
    ) -> None:
        """Watch a use case's loop live: throughput, models, drift, timeline, promotions."""
        from services.common.settings import CommonSettings

        settings = CommonSettings()
        try:
            spec: UseCase | None = settings.load_usecases().get(usecase)
        except ValueError as exc:
            logger.warning("use cases not loaded: %s", exc)
            spec = None

        async def main() -> LiveState:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if seconds is not None:
                loop.call_later(seconds, stop.set)
            return await run_live(
                settings.bootstrap,
                usecase,
                stop,
                spec=spec,
                partitions=settings.partitions,
                broker_wait=settings.broker_wait_seconds,
            )

        asyncio.run(main())
