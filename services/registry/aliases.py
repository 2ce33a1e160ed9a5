"""MLflow's ``champion`` / ``challenger`` aliases, kept a mirror of the promotion history.

The history on ``models.promotions`` decides who serves; the aliases only
show it in MLflow. :func:`mirror_aliases` sets each alias where the history
puts it and removes it from every other registered model of the use case
(its batch model ``<uc>`` and online model ``<uc>-online`` may both hold
versions), so it is idempotent and safe to run after every event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from services.common.promotions.history import UseCaseHistory
from services.common.tracking import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)


def model_names(state: UseCaseHistory, extra: Iterable[str] = ()) -> list[str]:
    """Registered models that may hold a use case's aliases."""
    names = {state.usecase, f"{state.usecase}-online", *extra}
    names.update(ref.name for ref in state.earlier)
    for event in state.recent:
        names.add(event.model_name)
    if state.champion is not None:
        names.add(state.champion.name)
    if state.challenger is not None:
        names.add(state.challenger.model.name)
    return sorted(names)


def wanted_aliases(state: UseCaseHistory) -> dict[str, tuple[str, str]]:
    """Alias to (registered model, version), as the history says."""
    wanted: dict[str, tuple[str, str]] = {}
    if state.champion is not None:
        wanted[CHAMPION] = (state.champion.name, state.champion.version)
    if state.challenger is not None:
        wanted[CHALLENGER] = (state.challenger.model.name, state.challenger.model.version)
    return wanted


def mirror_aliases(client: MlflowClient, state: UseCaseHistory) -> None:
    """Set and clear aliases on the use case's registered models to match ``state``."""
    from mlflow.exceptions import MlflowException

    wanted = wanted_aliases(state)
    for name in model_names(state):
        try:
            current = dict(client.get_registered_model(name).aliases)
        except MlflowException:
            continue  # not registered (yet): nothing to mirror on it
        for alias in (CHAMPION, CHALLENGER):
            target = wanted.get(alias)
            if target is not None and target[0] == name:
                if str(current.get(alias)) != target[1]:
                    client.set_registered_model_alias(name, alias, target[1])
                    logger.info("alias usecase=%s %s -> %s v%s", state.usecase, alias, *target)
            elif alias in current:
                client.delete_registered_model_alias(name, alias)
                logger.info("alias usecase=%s %s removed from %s", state.usecase, alias, name)
