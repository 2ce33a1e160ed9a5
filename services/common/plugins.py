"""Callables named in settings as ``module:function`` (data sources, injected in tests)."""

from __future__ import annotations

import importlib
from typing import Any


def load_callable(reference: str, setting: str, error: type[Exception] = ValueError) -> Any:
    """The attribute ``function`` of module ``module`` named by ``reference``.

    ``setting`` names the environment variable in error messages.

    >>> load_callable("os.path:join", "DRIFTLINE_X")("a", "b")
    'a/b'
    >>> load_callable("nowhere", "DRIFTLINE_X")
    Traceback (most recent call last):
    ...
    ValueError: DRIFTLINE_X 'nowhere': expected module:function
    """
    module_name, _, function_name = reference.partition(":")
    if not function_name:
        raise error(f"{setting} {reference!r}: expected module:function")
    try:
        return getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise error(f"{setting} {reference!r}: {exc}") from exc
