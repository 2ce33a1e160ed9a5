"""Ingestion: ``<uc>.raw`` to ``<uc>.features``, validated, de-duplicated, cleaned, featurized.

Its state (the event ids already seen, and the running statistics imputation
uses) lives in its seen record (a SQLite file under the service's home, or
PostgreSQL with ``DRIFTLINE_STATE_URL``: :mod:`services.common.seen`), written in
one transaction after each batch's rows are acknowledged and before its offsets
are committed, so a restarted process resumes exactly where it left off.
What fails validation goes to ``<uc>.deadletter`` with the reason.
"""
