"""The checkpoint: everything a restart needs, written atomically before offsets are committed.

One file per use case holds the learner (model, metrics, drift detector), the
pending join state and the next offset of every partition it consumed. It is
written to a temporary file, flushed to disk and renamed over the old one, so
a crash leaves either the old or the new checkpoint, never half of one. The
service writes it before it commits offsets and seeks to its offsets on
start: the model and the offsets always agree, so no row is learned twice and
none is skipped. It is not written after every batch (pickling the model is a
good part of a batch's cost) but on a schedule (``checkpoint_every_seconds``),
and the offsets committed to the broker are the last written checkpoint's
(:class:`CheckpointCommits`), never the consumer's position past it.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "uc.ckpt"
>>> from services.common.checkpoint import save_checkpoint
>>> save_checkpoint(path, {"offsets": {"uc.labels:0": 7}})
>>> load_checkpoint(path)
{'offsets': {'uc.labels:0': 7}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import checkpoint as common_checkpoint
from services.online_trainer.errors import CheckpointError
from services.online_trainer.join import LabelJoin
from services.online_trainer.labeling import LabelBudget
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
    # Set in the checkpoint saved just before a snapshot is registered: a restart
    # finishes that snapshot (see ``snapshot.register_snapshot``) before consuming.
    snapshot_pending: bool = False
    drift_alerts: int = 0
    # The broker log ``offsets`` refer to (services/common/epoch.py); None before epochs.
    log_epoch: str | None = None
    # The label requests of the last hour and those chosen but not yet published
    # (services/online_trainer/labeling.py); None while the use case asks for none.
    label_budget: LabelBudget | None = None


def load_checkpoint(path: Path) -> Any | None:
    """The state saved at ``path``, or None; an unreadable file raises this service's error."""
    return common_checkpoint.load_checkpoint(path, CheckpointError)


class CheckpointCommits:
    """The consumer as the consume loop sees it, with commits held to the checkpoints.

    The loop commits after every batch; here a commit sends the offsets of the
    checkpoints last written (``saved()`` gives them, ``topic:partition`` to the
    next offset), only those that moved since the last commit and only for
    assigned partitions. Everything else is the consumer's own.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, saved: Callable[[], Iterable[dict[str, int]]]
    ) -> None:
        self.consumer = consumer
        self.saved = saved
        self.committed: dict[TopicPartition, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)

    async def commit(self) -> None:
        assigned = self.consumer.assignment()
        moved: dict[TopicPartition, int] = {}
        for offsets in self.saved():
            for key, offset in offsets.items():
                topic, _, partition = key.rpartition(":")
                tp = TopicPartition(topic, int(partition))
                if tp in assigned and self.committed.get(tp) != offset:
                    moved[tp] = offset
        if moved:
            await self.consumer.commit(moved)
            self.committed.update(moved)
