"""The benchmark suite: the benchmarks of ``BENCHMARKS.md`` on the embedded stack.

A package of its own, beside the services: it drives them only as a user
would (their ``python -m services.<name>`` processes, topics, HTTP and the
names each service package exports) and shares the CLI's demo stream.
:mod:`~bench.runner` holds the method (interleaving, medians, ratios,
targets, the registry of benchmark functions by id); one module per group of
benchmarks registers its functions there; :mod:`~bench.report` writes
``report.json`` and ``report.md``; :mod:`~bench.command` is ``driftline
bench``. Importing :func:`load_benchmarks` fills the registry.
"""

from __future__ import annotations

from bench.runner import REGISTRY, BenchmarkSpec

MODULES = (
    "ingest",
    "replicas",
    "learning",
    "featureread",
    "drift",
    "serving",
    "loop",
    "restart",
    "explain",
)


def load_benchmarks() -> dict[str, BenchmarkSpec]:
    """Import every benchmark module (each registers its benchmarks); return the registry."""
    import importlib

    for module in MODULES:
        importlib.import_module(f"bench.{module}")
    return REGISTRY
