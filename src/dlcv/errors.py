"""The errors a user sees, and helpers that word them as one line naming the file and the problem."""

from __future__ import annotations

import reprlib

from dlcv.files import DlcvError  # defined there, so that the hand-in's copy of that module raises it too

__all__ = ["DlcvError", "Stopped", "exception_line", "listed", "mismatch_message", "shown"]


class Stopped(BaseException):
    """A command ended by a signal (SIGTERM, SIGINT), carrying its message and its exit status.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception`` on the way takes it for an error.

    Args:
        message: the one line printed for the user.
        signum: the signal's number; ``exit_status`` is 128 plus it, as a shell reports it.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


def listed(names: list[str], most: int = 5) -> str:
    """The first ``most`` names joined by commas, and how many are left out (``a, b, c, d, e and 3 more``)."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def mismatch_message(where: str, groups: list[tuple[str, list[str]]]) -> str | None:
    """One line saying, for each group of names that is not empty, how many it holds and the first five.

    For example ``where: 2 image(s) without a mask: a, b; 1 mask(s) without an image: c``.

    Args:
        where: what the line is about (a folder, a file), written first.
        groups: ``(description, names)`` pairs; an empty group is left out.

    Returns:
        the line, or None when every group is empty.
    """
    parts = [f"{len(names)} {what}: {listed(names)}" for what, names in groups if names]
    return f"{where}: " + "; ".join(parts) if parts else None


def shown(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, never building the whole repr of a huge value."""
    brief = reprlib.Repr()
    brief.maxlevel, brief.maxstring, brief.maxother, brief.maxlong = 3, limit, limit, limit
    brief.maxlist = brief.maxtuple = brief.maxdict = brief.maxset = 8
    try:
        text = brief.repr(value)
    except ValueError:  # an integer past Python's limit of digits for a conversion to text
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exception_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its type's name), cut to ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
