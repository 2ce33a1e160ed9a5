"""The ``driftline`` command line: the user's way into the system."""
