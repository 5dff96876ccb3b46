"""The one error family for problems a user can fix (bad config, data, checkpoint, weights, run folder).

The CLI prints a `WsolbenchError` as one line naming what to change; any other exception is a bug and
keeps its traceback.
"""


class WsolbenchError(Exception):
    """Base of every error whose message tells the user what to fix."""
