"""Ingestion: ``<uc>.raw`` to ``<uc>.features``, validated, de-duplicated, cleaned, featurized.

A faust-streaming app. Its state (the event ids already seen, and the
running statistics imputation uses) lives in tables backed by changelog
topics, so a restarted worker rebuilds it before it reads a new event.
What fails validation goes to ``<uc>.deadletter`` with the reason.
"""
