"""The telemetry service's settings (``DRIFTLINE_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.settings import CommonSettings


class TelemetrySettings(CommonSettings):
    """Where the console listens and who may press its buttons."""

    console_host: str = Field(default="127.0.0.1", description="address the web console serves on")
    console_port: int = Field(
        default=8080, ge=0, le=65535, description="port of the web console and its JSON API"
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="when set, the console's buttons need it (X-API-Key), as inference's /v1/* do",
    )


def bindable_port(host: str, wanted: int) -> int:
    """``wanted`` when a server can bind it on ``host`` now, else a free port (0: always).

    What ``driftline up`` tells the console to serve on, so that the address it
    prints is the one served (the console binds exactly its setting, or fails).

    >>> import socket
    >>> with socket.socket() as held:
    ...     held.bind(("127.0.0.1", 0)); held.listen()
    ...     taken = held.getsockname()[1]
    ...     bindable_port("127.0.0.1", taken) != taken
    True
    """
    from services.common.broker import bindable, free_port

    if wanted and bindable(host, wanted, reuse=True):  # as the server binds
        return wanted
    return free_port(host, spare=0)
