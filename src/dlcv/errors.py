"""The one error type a user sees: a clear sentence naming the file and the problem."""

from __future__ import annotations


class DlcvError(Exception):
    """A problem with the user's input (a file, a flag, a recipe).

    The command line prints it as one line and exits with status 2; no traceback.
    """
