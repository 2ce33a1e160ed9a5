"""Which parts a benchmark needs that this checkout may lack.

A benchmark that drives a service (B5 and B7 the inference service, B8 the
whole loop) first asks :func:`missing_parts`; when something is missing it
answers an ``unavailable`` line naming it instead of producing a figure.
"""

from __future__ import annotations

from bench.runner import Result, spec_of, unavailable


def missing_parts(parts: dict[str, str]) -> list[str]:
    """The descriptions of the services in ``parts`` that this tree cannot run.

    A service is present when ``services/<name>/__main__.py`` is in this
    checkout (what ``driftline up`` runs), not merely importable from elsewhere.

    >>> missing_parts({"ingestion": "ingestion", "nowhere": "the nowhere service"})
    ['the nowhere service']
    """
    from services.cli.up import discover_services

    present = set(discover_services())
    return [text for service, text in parts.items() if service not in present]


def not_available(id: str, parts: dict[str, str]) -> Result | None:
    """An ``unavailable`` line for benchmark ``id`` when a part is missing, else None."""
    missing = missing_parts(parts)
    if missing:
        return unavailable(spec_of(id), "not available: " + ", ".join(missing) + " missing")
    return None
