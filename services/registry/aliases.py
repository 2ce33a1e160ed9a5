"""MLflow's ``champion`` / ``challenger`` aliases: the lineup's durable record.

While the broker's log holds the promotion history, the history decides who
serves and the aliases mirror it. :func:`mirror_aliases` sets each alias where
the history puts it and removes it from every other registered model of the
use case (its batch model ``<uc>`` and online model ``<uc>-online`` may both
hold versions), so it is idempotent and safe to run after every event. The
version an alias points at is tagged with what the history knew of it (the
trial's mode and share, the gate score).

When the log holds no history for a use case (the embedded broker forgot its
log, or retention or an operator removed the topic), :func:`restored_lineup`
reads the aliases back as promotion events, which the promoter publishes, so
every reader of the log folds the same lineup again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from schemas.events import Promotion
from services.common.promotions.history import UseCaseHistory
from services.common.tracking import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

TRIAL_MODE = "driftline.trial_mode"
TRAFFIC_SHARE = "driftline.traffic_share"
GATE_SCORE = "driftline.gate_score"


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
                    _tag_version(client, state, alias, *target)
                    logger.info("alias usecase=%s %s -> %s v%s", state.usecase, alias, *target)
            elif alias in current:
                client.delete_registered_model_alias(name, alias)
                logger.info("alias usecase=%s %s removed from %s", state.usecase, alias, name)


def _tag_version(
    client: MlflowClient, state: UseCaseHistory, alias: str, name: str, version: str
) -> None:
    """Record on the version what a restore needs beyond the alias."""
    tags: dict[str, str] = {}
    if alias == CHAMPION and state.champion is not None and state.champion.score is not None:
        tags[GATE_SCORE] = repr(state.champion.score)
    if alias == CHALLENGER and state.challenger is not None:
        tags[TRIAL_MODE] = state.challenger.mode
        tags[TRAFFIC_SHARE] = repr(state.challenger.traffic_share)
        if state.challenger.model.score is not None:
            tags[GATE_SCORE] = repr(state.challenger.model.score)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _restore_id(*parts: str) -> str:
    return hashlib.sha256(":".join(("restore", *parts)).encode()).hexdigest()[:32]


def restored_lineup(client: MlflowClient, usecase: str, epoch: str) -> list[Promotion]:
    """The champion and challenger MLflow's aliases name, as promotion events (champion first).

    Their ids derive from the log epoch, the use case and the version, so two
    promoters restoring the same log publish the same events (folded once).
    """
    from mlflow.exceptions import MlflowException

    found: dict[str, tuple[str, str]] = {}
    for name in (usecase, f"{usecase}-online"):
        try:
            aliases = dict(client.get_registered_model(name).aliases)
        except MlflowException:
            continue
        for alias in (CHAMPION, CHALLENGER):
            if alias in aliases and alias not in found:
                found[alias] = (name, str(aliases[alias]))
    if CHAMPION not in found:
        return []  # a challenger needs a champion to be compared with
    events = []
    for alias in (CHAMPION, CHALLENGER):
        if alias not in found:
            continue
        name, number = found[alias]
        version = client.get_model_version(name, number)
        tags = dict(version.tags)
        mode: Literal["canary", "shadow"] = (
            "shadow" if tags.get(TRIAL_MODE) == "shadow" else "canary"
        )
        share = float(tags.get(TRAFFIC_SHARE, "0"))
        score = tags.get(GATE_SCORE)
        action: Literal["promote", "canary", "shadow"] = "promote" if alias == CHAMPION else mode
        events.append(
            Promotion(
                event_id=_restore_id(epoch, usecase, alias, name, number),
                usecase=usecase,
                action=action,
                model_name=name,
                model_version=number,
                artifact_uri=version.source,
                artifact_sha256=tags.get("artifact_sha256"),
                traffic_share=share if alias == CHALLENGER else None,
                scores={"candidate": float(score)} if score is not None else {},
                reason=f"restored from MLflow: the {alias} alias names {name} v{number}, and the "
                f"broker's log (epoch {epoch[:8]}) held no promotion history for {usecase}",
            )
        )
    return events
