"""The one protocol river and torch models are served, evaluated and promoted through."""

from services.common.models.loading import load_model
from services.common.models.protocol import Model, sha256_of

__all__ = ["Model", "load_model", "sha256_of"]
