"""``driftline up``: the whole stack as child processes, with prefixed logs.

The embedded broker first (unless one already runs), then the topics, then
every service as its own process. Ctrl-C (or SIGTERM) stops the services,
then the broker; children also get SIGTERM if this process dies, so no
orphan is left behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from services.common.broker import die_with_parent

SERVICES_DIR = Path(__file__).resolve().parent.parent
NOT_SERVICES = {"cli", "common"}
COLORS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "white"]
HEALTH_PORT_BASE = 9101


def discover_services() -> list[str]:
    """Every package under ``services/`` that runs (has a ``__main__.py``), in a stable order."""
    return sorted(
        path.parent.name
        for path in SERVICES_DIR.glob("*/__main__.py")
        if path.parent.name not in NOT_SERVICES
    )


class Supervisor:
    """Starts service processes, streams their output with a prefix, stops them all.

    With ``log_dir`` each child's output goes to ``<log_dir>/<name>.log`` instead
    of the console (the live view owns the console then).
    """

    def __init__(self, console: Console, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.console = console
        self.env = env
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[str]] = {}
        self._threads: list[threading.Thread] = []

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        color = COLORS[len(self.children) % len(COLORS)]
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**self.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C reaches only `up`, which stops us
        )
        self.children[name] = process
        thread = threading.Thread(
            target=self._pump, args=(name, color, process), daemon=True, name=f"log-{name}"
        )
        thread.start()
        self._threads.append(thread)

    def _pump(self, name: str, color: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with (self.log_dir / f"{name}.log").open("a") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
            return
        for line in process.stdout:
            self.console.print(
                f"[{color}]{name:>15}[/] | {line.rstrip()}", highlight=False, soft_wrap=True
            )

    def failed(self) -> list[tuple[str, int]]:
        """Children that have exited with a non-zero status (a finished demo is no failure)."""
        return [(n, p.returncode) for n, p in self.children.items() if p.poll() not in (None, 0)]

    def stop(self, timeout: float = 15.0) -> None:
        for process in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.children.items():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.console.print(f"[red]{name} did not stop in {timeout}s; killing it[/]")
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=2)


def health_ports(count: int, base: int = HEALTH_PORT_BASE) -> list[int]:
    """``count`` ports from ``base`` up that nothing listens on now."""
    from services.common.broker import port_open

    ports: list[int] = []
    candidate = base
    while len(ports) < count:
        if not port_open("127.0.0.1", candidate, timeout=0.05):
            ports.append(candidate)
        candidate += 1
    return ports


SERVING = ("registry", "inference")


def serving_first(chosen: list[str]) -> list[list[str]]:
    """Start stages: the serving path (the promoter restores the champion, inference
    answers), then the rest, so that on two cores a restart answers first.

    >>> serving_first(["batch_trainer", "inference", "ingestion", "registry"])
    [['inference', 'registry'], ['batch_trainer', 'ingestion']]
    >>> serving_first(["ingestion"])
    [['ingestion']]
    """
    first = [name for name in chosen if name in SERVING]
    rest = [name for name in chosen if name not in SERVING]
    return [stage for stage in (first, rest) if stage]


def wait_ready(supervisor: Supervisor, url: str, timeout: float = 60.0) -> bool:
    """Wait until ``url`` answers 200 (or a child dies, or ``timeout``); whether it did."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not supervisor.failed():
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def service_argv(name: str) -> list[str]:
    return [sys.executable, "-m", f"services.{name}"]


def start_services(supervisor: Supervisor, chosen: list[str], inference_url: str) -> None:
    """Each chosen service as a process with a health port of its own, serving path first."""
    ports = dict(zip(chosen, health_ports(len(chosen)), strict=True))
    for stage in serving_first(chosen):
        for name in stage:
            supervisor.start(name, service_argv(name), {"DRIFTLINE_HEALTH_PORT": str(ports[name])})
            where = f"{inference_url}/docs" if name == "inference" else f":{ports[name]}/healthz"
            supervisor.console.print(f"started [bold]{name}[/] ({where})")
        if "inference" in stage:
            wait_ready(supervisor, f"{inference_url}/readyz")


def run_until_stopped(supervisor: Supervisor, interval: float = 0.5) -> int:
    """Block until a signal or a child's death; return the exit status to use."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.is_set():
            dead = supervisor.failed()
            if dead:
                for name, code in dead:
                    supervisor.console.print(f"[red]service {name} exited with status {code}[/]")
                return 1
            stopping.wait(interval)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
