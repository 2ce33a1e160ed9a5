"""``driftline live [UC ...]``: the loop of every use case, live in the terminal.

It reads the telemetry service (``GET /api/telemetry`` on the console's
address, see :mod:`services.telemetry.console`) about twice a second and
draws (:mod:`services.cli.live_render`) one block a use case: throughput and
dead letters, who serves and how well, drift alerts, the loop's timeline and
the latest promotion decisions.
It reads no topic itself: the windows are the telemetry service's faust
tables, the same numbers the web console shows.

Embedding it (``driftline up --demo credit``):

- in an ``asyncio`` program: ``await run_live(url, stop)``, with ``stop`` an
  ``asyncio.Event`` set on Ctrl-C;
- next to a blocking supervisor: ``view = LiveThread(url, footer=...).start()``,
  then ``run_until_stopped(supervisor)`` in the main thread (it owns the
  signal handlers), then ``view.stop()``; ``view.document`` is the last
  document read. The view owns the console while it runs, so children's logs
  must go to files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Sequence

import httpx
import typer
from rich.console import Console
from rich.live import Live

from services.cli.live_render import Document, Footer, render, sparkline

logger = logging.getLogger(__name__)
__all__ = ["LiveThread", "render", "run_live", "sparkline"]

REFRESH_SECONDS = 0.5


# ---- reading the telemetry service --------------------------------------------------


def console_url() -> str:
    """The console's address from the settings (``DRIFTLINE_CONSOLE_HOST`` / ``_PORT``)."""
    from services.telemetry.settings import TelemetrySettings

    settings = TelemetrySettings()
    return f"http://{settings.console_host}:{settings.console_port}"


async def fetch(client: httpx.AsyncClient, url: str, usecases: Sequence[str] = ()) -> Document:
    """The telemetry document, only ``usecases`` when some are named."""
    response = await client.get(f"{url}/api/telemetry", timeout=5.0)
    response.raise_for_status()
    document: Document = response.json()
    if usecases:
        unknown = sorted(set(usecases) - set(document))
        if unknown:
            raise ValueError(f"no use case {unknown} in the telemetry; known: {sorted(document)}")
        document = {uc: document[uc] for uc in usecases}
    return document


async def run_live(
    url: str,
    stop: asyncio.Event,
    console: Console | None = None,
    *,
    usecases: Sequence[str] = (),
    footer: Footer | None = None,
    on_document: Callable[[Document], None] | None = None,
) -> Document | None:
    """Show the live view until ``stop`` is set; return the last document read."""
    console = console or Console()
    document: Document | None = None
    error: str | None = None
    async with httpx.AsyncClient() as client:
        with Live(
            render(None, source=url, footer=footer, error="starting"),
            console=console,
            auto_refresh=False,
        ) as live:
            while not stop.is_set():
                try:
                    document, error = await fetch(client, url, usecases), None
                    if on_document is not None:
                        on_document(document)
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__} at {url}"
                live.update(render(document, footer=footer, source=url, error=error), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
    return document


class LiveThread:
    """The live view in a thread of its own, for a caller whose main thread supervises."""

    def __init__(
        self,
        url: str,
        *,
        console: Console | None = None,
        usecases: Sequence[str] = (),
        footer: Footer | None = None,
    ) -> None:
        self._url, self._console, self._usecases, self._footer = url, console, usecases, footer
        self.document: Document | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="driftline-live", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> LiveThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> Document | None:
        """Stop the view and wait for it; returns the last document read."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        return self.document

    def _keep(self, document: Document) -> None:
        self.document = document

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_live(
                self._url,
                self._stop,
                self._console,
                usecases=self._usecases,
                footer=self._footer,
                on_document=self._keep,
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
    """Add ``driftline live [UC ...]`` to the command line."""

    @app.command("live")
    def live(
        usecases: list[str] = typer.Argument(None, help="use cases to show (default: every one)"),
        seconds: float | None = typer.Option(
            None, "--seconds", min=0, help="stop after S seconds (default: until Ctrl-C)"
        ),
        url: str | None = typer.Option(
            None, "--url", help="the telemetry service (default: the console's address setting)"
        ),
    ) -> None:
        """Watch the loop live from the telemetry service: throughput, models, drift, timeline."""
        source = url or console_url()

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if seconds is not None:
                loop.call_later(seconds, stop.set)
            await run_live(source, stop, usecases=usecases or ())

        try:
            asyncio.run(main())
        except ValueError as exc:
            Console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(2) from None
