"""The online trainer: learns a river model from every labeled event as it arrives.

It joins ``<uc>.features`` and ``<uc>.labels`` by ``event_id``, predicts then
learns each joined row (prequential evaluation), watches the error stream for
concept drift (``drift.alerts``), and registers snapshots in MLflow
(``models.candidates``). See :mod:`services.online_trainer.service`.

Exported for use outside the service (the benchmark suite): :func:`learn_stream`,
the service's per-row code over in-memory rows, and :func:`build_model`, the
river model a use case names.
"""

from services.online_trainer.learner import learn_stream
from services.online_trainer.pipeline import build_model

__all__ = ["build_model", "learn_stream"]
