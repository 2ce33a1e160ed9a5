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
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import types
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
