"""Feast definitions for every use case in ``DRIFTLINE_USECASES_DIR``.

One entity, push source and feature view per use case, built by the same
function the services use, so ``feast apply`` here and the features
service's start-up apply register the same objects. Without
``DRIFTLINE_USECASES_DIR`` the project's ``usecases/`` folder is read.
"""

import os
from pathlib import Path

from services.common.featurestore import FeatureStoreSettings, definitions

_defaults = {}
if "DRIFTLINE_USECASES_DIR" not in os.environ:
    _defaults["usecases_dir"] = Path(__file__).resolve().parent.parent / "usecases"
_settings = FeatureStoreSettings(**_defaults)
_objects = definitions(_settings.load_usecases().values(), _settings.home.resolve())

# feast discovers definitions by scanning this module's globals.
for _index, _definition in enumerate(_objects):
    globals()[f"definition_{_index}"] = _definition
