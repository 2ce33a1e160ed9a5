"""Who serves a use case, and how a promotion event changes it (pure).

The promotion history on ``models.promotions`` is the source of truth: folding
it with :func:`apply_promotion` from the beginning gives the current lineup.

>>> sha = "ab" * 32
>>> def event(action, version, **extra):
...     return Promotion(usecase="credit", action=action, model_name="credit",
...                      model_version=version, artifact_uri=f"file:///m/{version}",
...                      artifact_sha256=sha, reason="test", **extra)
>>> lineup = apply_promotion(Lineup(), event("promote", "1"))
>>> lineup.champion.version, lineup.challenger
('1', None)
>>> lineup = apply_promotion(lineup, event("canary", "2", traffic_share=0.2))
>>> lineup.challenger.version, lineup.mode, lineup.share
('2', 'canary', 0.2)
>>> apply_promotion(lineup, event("reject", "3")) == lineup
True
>>> lineup = apply_promotion(lineup, event("promote", "2", previous_version="1"))
>>> lineup.champion.version, lineup.challenger, lineup.mode
('2', None, None)
>>> shadowed = apply_promotion(lineup, event("shadow", "4"))
>>> shadowed.challenger.version, shadowed.mode
('4', 'shadow')
>>> apply_promotion(shadowed, event("rollback", "1")).champion.version
'1'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.events import Promotion
from services.inference.errors import ModelRefused

ChallengerMode = Literal["canary", "shadow"]


@dataclass(frozen=True)
class ModelRef:
    """One model version and the artifact that holds it."""

    name: str
    version: str
    artifact_uri: str
    sha256: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.sha256)


@dataclass(frozen=True)
class Lineup:
    """The champion, and the challenger with its mode and share of traffic (canary)."""

    champion: ModelRef | None = None
    challenger: ModelRef | None = None
    mode: ChallengerMode | None = None
    share: float = 0.0

    def refs(self) -> list[ModelRef]:
        return [ref for ref in (self.champion, self.challenger) if ref is not None]


def model_ref(promotion: Promotion) -> ModelRef:
    """The model a promotion names; refused when it carries no artifact or checksum."""
    if not promotion.artifact_uri or not promotion.artifact_sha256:
        raise ModelRefused(
            f"{promotion.action} of {promotion.model_name} v{promotion.model_version} "
            "carries no artifact_uri or artifact_sha256",
            model_name=promotion.model_name,
            model_version=promotion.model_version,
        )
    return ModelRef(
        promotion.model_name,
        promotion.model_version,
        promotion.artifact_uri,
        promotion.artifact_sha256,
    )


def apply_promotion(lineup: Lineup, promotion: Promotion, default_share: float = 0.1) -> Lineup:
    """The lineup after ``promotion`` (see the module's docstring for each action)."""
    if promotion.action == "reject":
        return lineup
    ref = model_ref(promotion)
    if promotion.action in ("promote", "rollback"):
        return Lineup(champion=ref)
    if promotion.action == "canary":
        share = promotion.traffic_share if promotion.traffic_share is not None else default_share
        return Lineup(lineup.champion, ref, "canary", share)
    return Lineup(lineup.champion, ref, "shadow", 0.0)
