"""The feature store writer: ``<uc>.features`` and ``<uc>.labels`` into Feast.

Feature rows go to the online store (a micro-batched push) and the offline
store (Parquet parts); labels go beside them in the offline store, for
point-in-time training sets. Offsets are committed only after both writes,
and every write is idempotent by event id.
"""
