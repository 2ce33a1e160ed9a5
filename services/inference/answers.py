"""How the inference service's answers name things: a class as a JSON key, a
prediction as a JSON value, a loaded model as ``GET /v1/models/{uc}`` shows it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.inference.loaded import LoadedModel


def json_key(value: Any) -> str:
    """A class value as a JSON object key (``1`` and ``"1"`` both become ``"1"``).

    >>> json_key(1), json_key(True), json_key("yes")
    ('1', 'true', 'yes')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plain(value: Any) -> Any:
    """A prediction as a JSON value: numpy scalars and the like become Python numbers.

    >>> plain(1), plain(2.5), plain("a")
    (1, 2.5, 'a')
    """
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def describe_model(loaded: LoadedModel | None) -> dict[str, Any] | None:
    if loaded is None:
        return None
    return {
        "model_name": loaded.ref.name,
        "model_version": loaded.ref.version,
        "artifact_uri": loaded.ref.artifact_uri,
        "artifact_sha256": loaded.ref.artifact_sha256,
        "flavor": loaded.model.flavor,
        "runtime": getattr(loaded.model, "runtime", loaded.model.flavor),
        "loaded_at": datetime.fromtimestamp(loaded.loaded_at, UTC).isoformat(),
    }
