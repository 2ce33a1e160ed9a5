"""Logging, configured once in each service's ``main()``."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr, one line each, key=value context in messages."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The Kafka clients are chatty at INFO about every rebalance and metadata refresh.
    for noisy in ("aiokafka", "kafka", "feast", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
