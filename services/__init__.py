"""driftline's services; importing the package defers Feast's torch import and
leaves out Feast's typeguard instrumentation.

Feast 0.67 imports torch as soon as ``feast`` is imported, whenever torch is
installed (``feast/torch_wrapper.py``, only to offer ``to_tensor``): about
230 MB of RSS and 1.3 s in every process that touches the feature store, none
of which uses a tensor from Feast. Every service process imports this package
first, so a lazy ``feast.torch_wrapper`` with the same ``get_torch()`` is put in
its place before Feast is imported: torch is imported when Feast is first asked
for a tensor, as Feast would have done, or by the code that trains with it.

>>> import feast, sys
>>> sys.modules["feast.torch_wrapper"].get_torch.__module__
'services'

Feast decorates its classes (``FeatureView``, ``Entity``, ``Field``, the data
sources) with typeguard's ``@typechecked``, which re-parses each class's source
with ``ast`` at import and checks argument types on every call: 2.6 s of CPU
in every process that imports the feature store here (``import
services.common.featurestore``: 3.7-4.0 s with it, 1.3-1.4 s without), and
the top frames of inference's start (``ast.parse`` 30%). typeguard's own
switch is ``python -O``, which would also drop every ``assert``; here its
decorator returns Feast's classes and functions as they are, and instruments
anything else as before. ``DRIFTLINE_FEAST_TYPECHECKS=1`` keeps Feast's
checks (for debugging a Feast call).

>>> from feast import FeatureView
>>> "typeguard" in FeatureView.__init__.__code__.co_names  # instrumented code imports it
False

Feast's metrics module (``feast.metrics``, imported with ``feast``) sets
``PROMETHEUS_MULTIPROCESS_DIR`` and ``PROMETHEUS_MULTIPROC_DIR`` to a temporary
folder of its own when they are unset, for its Gunicorn feature server. That
turns on prometheus_client's multiprocess mode in any process that imports
prometheus_client after Feast (every metric value a memory-mapped file: the
features service's metrics were), and in every process it starts, which
inherit the variables and write into a folder that is deleted when the
process that imported Feast exits. Here prometheus_client is imported before
``feast.metrics`` runs, the variables Feast set are removed after it, and so is
its folder; variables naming a Feast folder that a process inherited are removed
at start. No driftline service runs Feast's feature server.

>>> import os
>>> from prometheus_client import values
>>> values.ValueClass.__name__, "PROMETHEUS_MULTIPROC_DIR" in os.environ
('MutexValue', False)
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import os
import shutil
import sys
import types
from collections.abc import Sequence
from typing import Any


def _defer_feast_torch() -> None:
    if "feast" in sys.modules or "feast.torch_wrapper" in sys.modules:
        return
    wrapper = types.ModuleType("feast.torch_wrapper", "torch, imported when first asked for.")

    def get_torch() -> Any:
        """The torch module, imported on first use; ImportError (as Feast's) when it can't be."""
        try:
            return importlib.import_module("torch")
        except Exception as error:  # Feast catches missing CUDA libraries the same way
            raise ImportError(f"Torch is not available or failed to import: {error}") from error

    get_torch.__module__ = __name__
    wrapper.get_torch = get_torch  # type: ignore[attr-defined]
    sys.modules[wrapper.__name__] = wrapper


_defer_feast_torch()


def _leave_out_feast_typechecks() -> None:
    if os.environ.get("DRIFTLINE_FEAST_TYPECHECKS") == "1" or "feast" in sys.modules:
        return
    try:
        import typeguard
    except ImportError:
        return
    instrument = typeguard.typechecked

    def typechecked(target: Any = None, **options: Any) -> Any:
        """typeguard's decorator, except that Feast's code is returned as it is."""
        if target is None:
            return functools.partial(typechecked, **options)
        if str(getattr(target, "__module__", "")).partition(".")[0] == "feast":
            return target
        return instrument(target, **options)

    typechecked.__wrapped__ = instrument  # type: ignore[attr-defined]
    typeguard.typechecked = typechecked


_leave_out_feast_typechecks()


FEAST_METRICS_FOLDER = "feast_metrics_"  # the prefix of the folder Feast's metrics make
PROMETHEUS_FOLDER_VARIABLES = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")


class _FeastMetricsInProcess(importlib.abc.MetaPathFinder):
    """Finds ``feast.metrics`` and runs it with prometheus_client imported first, then
    takes back the variables and the folder it made."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "feast.metrics":
            return None
        sys.meta_path.remove(self)  # once, and the regular finders find it
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            import prometheus_client.values  # noqa: F401 (its values stay in this process)

            run(module)
            if getattr(module, "_owns_mp_dir", False):
                for name in PROMETHEUS_FOLDER_VARIABLES:
                    os.environ.pop(name, None)
                shutil.rmtree(str(module._prometheus_mp_dir), ignore_errors=True)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _keep_metrics_in_process() -> None:
    for name in PROMETHEUS_FOLDER_VARIABLES:
        if os.path.basename(os.environ.get(name, "")).startswith(FEAST_METRICS_FOLDER):
            del os.environ[name]  # inherited from a process that imported Feast
    if "feast.metrics" not in sys.modules:
        sys.meta_path.insert(0, _FeastMetricsInProcess())


_keep_metrics_in_process()
