"""The one error type a user sees: a clear sentence naming the file and the problem."""

from __future__ import annotations


class DlcvError(Exception):
    """A problem with the user's input (a file, a flag, a recipe).

    The command line prints it as one line and exits with status 2; no traceback.
    """


def mismatch_message(where: str, groups: list[tuple[str, list[str]]], shown: int = 5) -> str | None:
    """``where: 2 image(s) without a mask: a, b; 1 mask(s) without an image: c`` for the non-empty
    groups of (description, names), at most ``shown`` names each; None when every group is empty."""
    parts = []
    for what, names in groups:
        if names:
            listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
            parts.append(f"{len(names)} {what}: {listed}")
    return f"{where}: " + "; ".join(parts) if parts else None
