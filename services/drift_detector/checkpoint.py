"""The checkpoint: every monitor and its offsets, written atomically before offsets are committed.

The file is written to a temporary name, flushed to disk and renamed over the
old one, so a crash leaves the old or the new checkpoint, never half of one.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "detector.ckpt"
>>> load_checkpoint(path) is None
True
>>> from services.common.checkpoint import save_checkpoint
>>> save_checkpoint(path, {"credit": {"credit.features:0": 7}})
>>> load_checkpoint(path)
{'credit': {'credit.features:0': 7}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common import checkpoint as common_checkpoint
from services.drift_detector.errors import CheckpointError


def load_checkpoint(path: Path) -> Any | None:
    """The state saved at ``path``, or None; an unreadable file raises this service's error."""
    return common_checkpoint.load_checkpoint(path, CheckpointError)
