"""Data preparation shared by ingestion, trainers and inference.

One library, driven by the use-case spec, so that training and serving
compute the same features from the same raw fields.
"""

from services.common.prep.preparer import Preparer, Record, feature_row_id

__all__ = ["Preparer", "Record", "feature_row_id"]
