"""Who serves a use case, as inference reads it from the shared promotion fold (pure).

The promotion history on ``models.promotions`` is the source of truth, and
:class:`~services.common.promotions.history.PromotionHistory` is its one fold:
the promoter, the drift detector and the command line fold it the same way.
A :class:`Lineup` is what inference needs of one use case's state: the
champion, and the challenger with its mode and share of traffic.

Inference adds one rule, a check and not a fold of its own: a promotion that
names a model without its artifact or checksum is refused
(:func:`check_servable`), so it never enters the fold.

>>> from services.common.promotions.history import PromotionHistory
>>> sha = "ab" * 32
>>> def event(action, version, **extra):
...     return Promotion(usecase="credit", action=action, model_name="credit",
...                      model_version=version, artifact_uri=f"file:///m/{version}",
...                      artifact_sha256=sha, reason="test", **extra)
>>> history = PromotionHistory()
>>> def lineup_after(promotion):
...     check_servable(promotion)
...     history.apply(promotion)
...     return Lineup.of(history.get("credit"))
>>> lineup = lineup_after(event("promote", "1"))
>>> lineup.champion.version, lineup.challenger
('1', None)
>>> lineup = lineup_after(event("canary", "2", traffic_share=0.2))
>>> lineup.challenger.version, lineup.mode, lineup.share
('2', 'canary', 0.2)
>>> lineup_after(event("reject", "3")) == lineup
True
>>> lineup = lineup_after(event("promote", "2", previous_version="1"))
>>> lineup.champion.version, lineup.challenger, lineup.mode
('2', None, None)
>>> shadowed = lineup_after(event("shadow", "4"))
>>> shadowed.challenger.version, shadowed.mode, shadowed.share
('4', 'shadow', 0.0)
>>> lineup_after(event("rollback", "1")).champion.version
'1'
>>> bare = Promotion(usecase="credit", action="promote", model_name="credit",
...                  model_version="5", reason="no artifact")
>>> try:
...     check_servable(bare)
... except ModelRefused as refusal:
...     print(refusal.reason)
promote of credit v5 carries no artifact_uri or artifact_sha256
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.events import Promotion
from services.common.promotions.history import ModelRef, UseCaseHistory
from services.inference.errors import ModelRefused

ChallengerMode = Literal["canary", "shadow"]


@dataclass(frozen=True)
class Lineup:
    """The champion, and the challenger with its mode and share of traffic (canary)."""

    champion: ModelRef | None = None
    challenger: ModelRef | None = None
    mode: ChallengerMode | None = None
    share: float = 0.0

    @classmethod
    def of(cls, state: UseCaseHistory) -> Lineup:
        """The lineup a use case's folded promotion history says."""
        trial = state.challenger
        if trial is None:
            return cls(state.champion)
        share = trial.traffic_share if trial.mode == "canary" else 0.0
        return cls(state.champion, trial.model, trial.mode, share)

    def refs(self) -> list[ModelRef]:
        return [ref for ref in (self.champion, self.challenger) if ref is not None]


def check_servable(promotion: Promotion) -> None:
    """Refuse a promotion that names a model to serve without its artifact or checksum."""
    if promotion.action == "reject":
        return
    if not promotion.artifact_uri or not promotion.artifact_sha256:
        raise ModelRefused(
            f"{promotion.action} of {promotion.model_name} v{promotion.model_version} "
            "carries no artifact_uri or artifact_sha256",
            model_name=promotion.model_name,
            model_version=promotion.model_version,
        )
