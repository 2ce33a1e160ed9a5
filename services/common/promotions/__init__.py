"""The promotion history on ``models.promotions``: who serves, folded from the replayable log.

Shared by the promoter (which writes the log), inference (which serves what
it says), the drift detector (whose reference is the champion's training
data) and the command line (which shows it). :mod:`.history` is the one fold
of that log and holds the one :class:`~.history.ModelRef`.
"""
