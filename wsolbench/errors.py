"""The one error family for problems a user can fix (bad config, data, checkpoint, weights, run folder).

The CLI prints a `WsolbenchError` as one line naming what to change; any other exception is a bug and
keeps its traceback.
"""


class WsolbenchError(Exception):
    """Base of every error whose message tells the user what to fix."""


class MissingFileError(WsolbenchError, FileNotFoundError):
    """A file or folder the user named, or the command needs, does not exist; the message says how to get it."""


class BadFileError(WsolbenchError, ValueError):
    """A file the user gave exists but does not hold what was expected; the message names the file and key or line."""


class RunConflictError(WsolbenchError, ValueError):
    """A run folder or training checkpoint does not fit the request (other config, other process count)."""


class BadValueError(WsolbenchError, ValueError):
    """A value the user gave (a flag, a protocol or metric name, a threshold) is unknown or out of range."""


class BadAnnotationError(WsolbenchError, RuntimeError):
    """Ground truth that cannot be scored: an invalid GT box, a split without any positive mask pixel."""


LISTED_PROBLEMS = 20


def problem_report(head: str, problems: list[str], advice: str = "") -> str:
    """One message for many bad inputs: `head`, "(the first 20 below)" when the list is cut, `advice`,
    then the first LISTED_PROBLEMS problems, one per line."""
    shown = problems[:LISTED_PROBLEMS]
    cut = f" (the first {len(shown)} below)" if len(shown) < len(problems) else ""
    return f"{head}{cut}{advice}:\n  " + "\n  ".join(shown)
