"""``driftline bench``: the benchmarks of ``BENCHMARKS.md`` on the embedded stack.

:mod:`~services.cli.bench.runner` holds the method (interleaving, medians,
ratios, targets, the registry of benchmark functions by id); one module per
group of benchmarks registers its functions there; :mod:`~services.cli.bench.report`
writes ``report.json`` and ``report.md``. Importing :func:`load_benchmarks`
fills the registry.
"""

from __future__ import annotations

from services.cli.bench.runner import REGISTRY, BenchmarkSpec

MODULES = ("ingest", "learning", "featureread", "drift", "serving", "loop", "restart")


def load_benchmarks() -> dict[str, BenchmarkSpec]:
    """Import every benchmark module (each registers its benchmarks); return the registry."""
    import importlib

    for module in MODULES:
        importlib.import_module(f"services.cli.bench.{module}")
    return REGISTRY
