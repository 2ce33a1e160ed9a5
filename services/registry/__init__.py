"""The registry / promoter service: gates candidates, runs canaries, answers drift alerts.

It consumes ``models.candidates`` (the evaluation gate against the champion),
``<uc>.predictions`` with ``<uc>.labels`` (live canary and shadow trials) and
``drift.alerts`` (retraining, with a cooldown); it publishes
``models.promotions`` (the replayable history of who serves, the source of
truth that MLflow's ``champion`` / ``challenger`` aliases mirror) and
``training.requests``.
"""
