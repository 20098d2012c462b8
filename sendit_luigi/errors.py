"""Errors that belong to one batch, and keeping PHI out of their text.

A problem with one file or one batch is data, not a crash: it is written into
the batch's checkpoint and shown by ``status`` and the metrics, and the other
batches go on. Exceptions that escape a task are for the run itself failing.
"""

from __future__ import annotations

from collections.abc import Iterable


class BatchError(Exception):
    """This batch cannot go further; the message says what the user can do.

    ``retryable`` errors (a service was down) are tried again by the next run;
    the others stay until the input changes or ``python -m sendit_luigi retry``.
    """

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class RecipeError(Exception):
    """The recipe cannot be used: a configuration problem, so the run fails."""


def redact(text: str, folder: str | None = None, values: Iterable[str] = ()) -> str:
    """Remove the batch folder path and any known identifying value from ``text``.

    Library messages (``OSError``, pydicom) may quote paths or values; the
    batch folder name is an accession number.
    """
    if folder:
        text = text.replace(folder, "<batch folder>")
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "[redacted]")
    return text


def describe(exc: BaseException) -> str:
    """A one-line description of an exception, without the traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
