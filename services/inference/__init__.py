"""The inference service: champion and challenger models behind an HTTP API.

``POST /v1/predict/{uc}`` reads the entity's online features from Feast (or
featurizes the request's own fields with the shared preparer), routes the
request to the champion, a canary challenger or a shadow, and logs every
answer to ``<uc>.predictions``. Models come from MLflow and change on every
``models.promotions`` event without a restart.

Exported for use outside the service (the benchmark suite): :class:`OnlineReader`,
the service's reader of an entity's row in the online store, and
:func:`explain_rows` (:func:`.explain.explain`), its explanations of a model's answers.
"""

from services.inference.explain import explain as explain_rows
from services.inference.features import OnlineReader

__all__ = ["OnlineReader", "explain_rows"]
