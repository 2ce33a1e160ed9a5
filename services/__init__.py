"""driftline's services; importing the package defers Feast's torch import.

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
"""

from __future__ import annotations

import importlib
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
