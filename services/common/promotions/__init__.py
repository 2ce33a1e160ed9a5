"""The promotion history on ``models.promotions``: who serves, folded from the replayable log.

Shared by the promoter (which writes the log), inference (which serves what
it says) and the command line (which shows it).
"""
