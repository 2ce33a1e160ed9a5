"""The online trainer: learns a river model from every labeled event as it arrives.

It joins ``<uc>.features`` and ``<uc>.labels`` by ``event_id``, predicts then
learns each joined row (prequential evaluation), watches the error stream for
concept drift (``drift.alerts``), and registers snapshots in MLflow
(``models.candidates``). See :mod:`services.online_trainer.service`.
"""
