"""Which model answers a request: the champion, a canary challenger, or both (shadow).

The canary split is sticky: a stable hash of ``entity_id`` puts each entity in
a bucket in [0, 1), and entities whose bucket is under the share go to the
challenger, every time, in every process.

>>> bucket("cust-1") == bucket("cust-1")
True
>>> 0.0 <= bucket("cust-1") < 1.0
True
>>> route("canary", 0.0, "cust-1"), route("canary", 1.0, "cust-1")
(('champion', None), ('challenger', None))
>>> route("shadow", 0.0, "cust-1")
('champion', 'shadow')
>>> route(None, 0.0, "cust-1")
('champion', None)
"""

from __future__ import annotations

import hashlib
from typing import Literal

Answering = Literal["champion", "challenger"]
Extra = Literal["shadow"] | None


def bucket(entity_id: str) -> float:
    """A stable number in [0, 1) for an entity (blake2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(mode: str | None, share: float, entity_id: str) -> tuple[Answering, Extra]:
    """Who answers ``entity_id``, and whether the shadow also scores it."""
    if mode == "canary" and bucket(entity_id) < share:
        return "challenger", None
    if mode == "shadow":
        return "champion", "shadow"
    return "champion", None
