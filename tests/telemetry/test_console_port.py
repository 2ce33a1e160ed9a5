"""A taken console port (DRIFTLINE_CONSOLE_PORT): an error naming it, or the address really served.

The console served on a free port when its own was taken, while ``driftline
up`` printed the setting's: the printed address led to whatever held the port.
Now the console binds exactly its setting or fails naming the port and the
setting, and ``up`` tells it a port it can bind and prints that one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.telemetry.console import Console, ConsolePortBusy
from tests.stack import ROOT, Stack, wait_until
from tests.telemetry.test_console_api import console


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something listens on (and never answers)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


async def test_the_console_refuses_a_taken_port_naming_it_and_the_setting(
    tmp_path: Path, taken: int
) -> None:
    app, _ = console(tmp_path)
    with pytest.raises(ConsolePortBusy, match=f"127.0.0.1:{taken} .*DRIFTLINE_CONSOLE_PORT"):
        await app.start("127.0.0.1", taken)
    free: Console = console(tmp_path)[0]
    try:
        assert await free.start("127.0.0.1", 0) > 0  # 0: any free port, the one bound is told
    finally:
        await free.stop()


@pytest.mark.integration
def test_up_prints_the_address_the_console_serves_on(
    bootstrap: str, unique: str, tmp_path: Path, taken: int
) -> None:
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    (usecases / f"{unique}.yaml").write_text((ROOT / "usecases" / "credit.yaml").read_text())
    env: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")},
        "DRIFTLINE_BOOTSTRAP": bootstrap,
        "DRIFTLINE_HOME": str(tmp_path / "home"),
        "DRIFTLINE_USECASES_DIR": str(usecases),
        "DRIFTLINE_GROUP_PREFIX": unique,
        "DRIFTLINE_CONSOLE_PORT": str(taken),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "up.log"
    argv = [sys.executable, "-m", "services.cli", "up", "--external-broker", "--no-view"]
    with log.open("ab") as out:
        up = subprocess.Popen([*argv, "--only", "telemetry"], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def printed() -> str | None:
            for line in log.read_text().splitlines():
                if "started telemetry" in line and "web console http://" in line:
                    return line.split("web console ", 1)[1].rstrip(")")
            return None

        assert wait_until(lambda: printed() is not None, 60), log.read_text()
        url = printed()
        assert url is not None and not url.endswith(f":{taken}"), log.read_text()
        assert f"port {taken} (DRIFTLINE_CONSOLE_PORT) is taken" in log.read_text()

        def answers() -> bool:
            try:
                return unique in httpx.get(f"{url}/api/telemetry", timeout=2).json()
            except httpx.HTTPError:
                return False

        assert wait_until(answers, 90), log.read_text()[-4000:]
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()


@pytest.mark.integration
def test_the_service_exits_with_the_reason_when_its_port_is_taken(stack: Stack, taken: int) -> None:
    process = stack.start("telemetry", DRIFTLINE_CONSOLE_PORT=str(taken))
    assert process.wait(60) == 2, stack.tail("telemetry")
    reason = stack.tail("telemetry")
    assert f"cannot listen on 127.0.0.1:{taken}" in reason and "DRIFTLINE_CONSOLE_PORT" in reason
    assert "Traceback" not in reason  # a setting to change, not a bug
