"""``driftline up``: the whole stack as child processes, with prefixed logs.

The embedded broker first (unless one already runs), then the topics, then
every service as its own process. Ctrl-C (or SIGTERM) stops the services,
then the broker; children also get SIGTERM if this process dies, so no
orphan is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from services.common.broker import die_with_parent
from services.common.standby import SINGLETONS

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


def parse_replicas(text: str | None, available: list[str]) -> dict[str, int]:
    """``ingestion=2,features=2`` as counts by service; raise ValueError naming what is wrong.

    A singleton's count is its active process and its standbys (``registry=2``).

    >>> parse_replicas("ingestion=2, features=3", ["features", "ingestion"])
    {'ingestion': 2, 'features': 3}
    >>> parse_replicas(None, ["ingestion"])
    {}
    >>> parse_replicas("registry=2", ["registry"])
    {'registry': 2}
    >>> parse_replicas("registry=x", ["registry"])
    Traceback (most recent call last):
    ...
    ValueError: --replicas: expected registry=N, got 'registry=x'
    """
    counts: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, number = item.strip().partition("=")
        name = name.strip()
        if name not in available:
            raise ValueError(f"--replicas: unknown service {name!r}; known: {available}")
        try:
            count = int(number)
        except ValueError:
            raise ValueError(f"--replicas: expected {name}=N, got {item.strip()!r}") from None
        if count < 1:
            raise ValueError(f"--replicas: {name} needs at least 1 replica, got {count}")
        counts[name] = count
    return counts


def replica_env(name: str, count: int) -> dict[str, str]:
    """How a service with ``count`` processes is told to share its work.

    >>> replica_env("ingestion", 2), replica_env("registry", 2), replica_env("registry", 1)
    ({'DRIFTLINE_CONSUMER_MODE': 'group'}, {'DRIFTLINE_STANDBY': 'true'}, {})
    """
    if count == 1:
        return {}
    if name in SINGLETONS:
        return {"DRIFTLINE_STANDBY": "true"}  # one active, the others stand by
    return {"DRIFTLINE_CONSUMER_MODE": "group"}


def instance_names(name: str, count: int) -> list[str]:
    """Log names of a service's processes: the name alone, or ``name-1`` .. ``name-N``.

    >>> instance_names("ingestion", 1), instance_names("ingestion", 2)
    (['ingestion'], ['ingestion-1', 'ingestion-2'])
    """
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def start_services(
    supervisor: Supervisor,
    chosen: list[str],
    inference_url: str,
    replicas: dict[str, int] | None = None,
) -> list[str]:
    """Each chosen service as processes with a health port each, serving path first.

    A service with more than one replica runs in group mode
    (``DRIFTLINE_CONSUMER_MODE=group``): its replicas share the partitions; a
    singleton's run with ``DRIFTLINE_STANDBY=true``: one works, the others stand by. Each
    inference replica after the first gets an API port of its own
    (``DRIFTLINE_PORT``). Returns the inference replicas' URLs.
    """
    counts = {name: (replicas or {}).get(name, 1) for name in chosen}
    ports = iter(health_ports(sum(counts.values())))
    extra_inference = counts.get("inference", 1) - 1
    api_base = int(inference_url.rsplit(":", 1)[-1]) if extra_inference else 0
    api_ports = iter(health_ports(extra_inference, base=api_base + 1) if extra_inference else [])
    urls: list[str] = []
    for stage in serving_first(chosen):
        for name in stage:
            for instance in instance_names(name, counts[name]):
                health = next(ports)
                env = {"DRIFTLINE_HEALTH_PORT": str(health), **replica_env(name, counts[name])}
                url = inference_url
                if name == "inference" and urls:
                    url = f"{inference_url.rsplit(':', 1)[0]}:{next(api_ports)}"
                    env["DRIFTLINE_PORT"] = url.rsplit(":", 1)[-1]
                if name == "inference":
                    urls.append(url)
                where = f"{url}/docs" if name == "inference" else f":{health}/healthz"
                if name == "telemetry":  # the web console, on the port it is told
                    where = f"web console {console_address(supervisor, env)}"
                supervisor.start(instance, service_argv(name), env)
                supervisor.console.print(f"started [bold]{instance}[/] ({where})")
        for url in urls if "inference" in stage else []:
            wait_ready(supervisor, f"{url}/readyz")
    return urls


def console_address(supervisor: Supervisor, env: dict[str, str]) -> str:
    """The console's address: its setting, or a free port when that one is taken.

    The port goes in the telemetry process's ``env`` (it binds exactly that one or
    fails, naming it) and in this process's environment, for the live view.
    """
    from services.telemetry.settings import TelemetrySettings, bindable_port

    settings = TelemetrySettings()
    port = bindable_port(settings.console_host, settings.console_port)
    if settings.console_port and port != settings.console_port:
        supervisor.console.print(
            f"[yellow]warning: the web console's port {settings.console_port} "
            f"(DRIFTLINE_CONSOLE_PORT) is taken; it serves on {port} "
            f"(driftline live in another shell: DRIFTLINE_CONSOLE_PORT={port})[/]",
            highlight=False,
        )
    env["DRIFTLINE_CONSOLE_PORT"] = os.environ["DRIFTLINE_CONSOLE_PORT"] = str(port)
    return f"http://{settings.console_host}:{port}"


def replicas_warning(replicas: dict[str, int], partitions: int) -> str | None:
    """A warning when a service has more replicas than its topics have partitions.

    >>> replicas_warning({"ingestion": 3, "features": 1}, 2)
    'ingestion: 3 replicas but topics have 2 partition(s) (DRIFTLINE_PARTITIONS): 1 will sit idle'
    >>> replicas_warning({"ingestion": 2, "registry": 3}, 1) is None
    False
    >>> replicas_warning({"ingestion": 2, "registry": 3}, 2) is None
    True
    """
    spread = [name for name in replicas if name != "inference" and name not in SINGLETONS]
    over = [(name, replicas[name]) for name in spread if replicas[name] > partitions]
    if not over:
        return None
    return "; ".join(
        f"{name}: {n} replicas but topics have {partitions} partition(s) "
        f"(DRIFTLINE_PARTITIONS): {n - partitions} will sit idle"
        for name, n in over
    )


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
