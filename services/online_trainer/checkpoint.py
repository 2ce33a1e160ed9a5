"""The checkpoint: everything a restart needs, written atomically before offsets are committed.

One file per use case holds the learner (model, metrics, drift detector), the
pending join state and the next offset of every partition it consumed. It is
written to a temporary file, flushed to disk and renamed over the old one, so
a crash leaves either the old or the new checkpoint, never half of one. The
service writes it before it commits offsets and seeks to its offsets on
start: the model and the offsets always agree, so no row is learned twice and
none is skipped.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "uc.ckpt"
>>> save_checkpoint(path, {"offsets": {"uc.labels:0": 7}})
>>> load_checkpoint(path)
{'offsets': {'uc.labels:0': 7}}
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from services.online_trainer.errors import CheckpointError
from services.online_trainer.join import LabelJoin
from services.online_trainer.learner import OnlineLearner


@dataclass
class TrainerState:
    """The mutable state of one use case's online trainer."""

    spec_hash: str
    learner: OnlineLearner
    join: LabelJoin
    offsets: dict[str, int] = field(default_factory=dict)
    clock: float = 0.0
    first_event: datetime | None = None
    last_event: datetime | None = None
    rows_at_snapshot: int = 0
    snapshots: int = 0
    drift_alerts: int = 0


def offset_key(topic: str, partition: int) -> str:
    """How a partition is named in the checkpoint.

    >>> offset_key("credit.labels", 0)
    'credit.labels:0'
    """
    return f"{topic}:{partition}"


def save_checkpoint(path: Path, state: Any) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            pickle.dump(state, stream, protocol=pickle.HIGHEST_PROTOCOL)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Any | None:
    """The state saved at ``path``, or None if there is none yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from exc
