"""B5 serving and B8 closed loop: benchmarks whose parts are not all in this tree.

Each says which part is missing instead of producing a figure. When the
inference service (B5) and the promoter (B8) exist, their benchmark
functions replace these: register a function under the same id in a module
of its own and list that module in :data:`services.cli.bench.MODULES` after
this one (a later registration of an id wins).
"""

from __future__ import annotations

from services.cli.bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Target,
    benchmark,
    spec_of,
    unavailable,
)


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


def not_available(id: str, parts: dict[str, str]) -> Result:
    missing = missing_parts(parts)
    if missing:
        return unavailable(spec_of(id), "not available: " + ", ".join(missing) + " missing")
    return unavailable(spec_of(id), f"not available: the {id} benchmark function is not written")


@benchmark(
    "B5",
    "serving",
    Target(
        "RPS ratio >= 0.8, p99 overhead <= 2 ms",
        [Criterion("ratio", ">=", 0.8), Criterion("p99_overhead_ms", "<=", 2.0)],
    ),
)
def serving(context: BenchContext) -> Result:
    return not_available("B5", {"inference": "services/inference (the inference service)"})


@benchmark(
    "B8",
    "closed loop",
    Target("loop overhead <= 10 s", [Criterion("figure", "<=", 10.0)]),
)
def closed_loop(context: BenchContext) -> Result:
    return not_available(
        "B8",
        {
            "inference": "services/inference (the inference service)",
            "registry": "services/registry (the promoter)",
        },
    )
