"""JSON Schema export of every system event (``driftline schemas export DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.backtests import Backtest
from schemas.events import EVENT_TYPES, SystemEvent
from schemas.usecase import UseCase

# Events defined beside schemas.events (they import it, so it cannot list them).
OTHER_EVENTS: tuple[type[SystemEvent], ...] = (Backtest,)


def export_json_schemas(directory: Path | str) -> list[Path]:
    """Write ``<event_type>.v<version>.json`` for each event, plus the use-case spec."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_class in (*EVENT_TYPES, *OTHER_EVENTS):
        fields = event_class.model_fields
        name = f"{fields['event_type'].default}.v{fields['schema_version'].default}.json"
        written.append(_write(directory / name, event_class.model_json_schema()))
    written.append(_write(directory / "usecase.json", UseCase.model_json_schema()))
    return written


def _write(path: Path, schema: dict[str, object]) -> Path:
    path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return path
