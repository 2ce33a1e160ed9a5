"""Checkpoints: a service's state and its consumed offsets, in one file, written atomically.

The file is written to a temporary name, flushed to disk and renamed over the
old one, so a crash leaves either the old or the new checkpoint, never half
of one. A service writes it before committing offsets and seeks to its
offsets on start, so state and offsets always agree.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "uc.ckpt"
>>> load_checkpoint(path) is None
True
>>> save_checkpoint(path, {"offsets": {offset_key("uc.labels", 0): 7}})
>>> load_checkpoint(path)
{'offsets': {'uc.labels:0': 7}}
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from services.common.errors import DriftlineError


class CheckpointError(DriftlineError):
    """A checkpoint file that exists but cannot be read."""


def offset_key(topic: str, partition: int) -> str:
    """How a partition is named in a checkpoint.

    >>> offset_key("credit.features", 0)
    'credit.features:0'
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


def load_checkpoint(path: Path, error: type[Exception] = CheckpointError) -> Any | None:
    """The state saved at ``path``, or None if there is none yet; ``error`` if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise error(f"{path}: unreadable checkpoint: {exc}") from exc
