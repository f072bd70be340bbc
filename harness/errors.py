"""The one error type a user sees: the CLI prints it as one line and exits with 2."""

from __future__ import annotations


class HarnessError(Exception):
    """A mistake in the user's input (task file, data, options) or environment.

    The message is written for the user: it names the file, the field or line, and
    what to do about it.
    """
