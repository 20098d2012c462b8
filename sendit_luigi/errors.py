"""Errors that belong to one file or one batch, in our own words.

A problem with one file or one batch is data, not a crash: it is written into
the batch's checkpoint and shown by ``status`` and the metrics, and the other
batches go on. Exceptions that escape a task are for the run itself failing.

Error texts never quote a library's message: pydicom's can hold an element's
raw bytes (a patient's name), and ``OSError`` texts hold paths (folder names
are accession numbers). ``file_error`` turns any exception into our words: the
kind of problem, and the element's tag where the library named one.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable

from pydicom.datadict import keyword_for_tag


class BatchError(Exception):
    """This batch cannot go further; the message says what the user can do.

    ``retryable`` errors (a service was down) are tried again by the next run;
    the others stay until the input changes.
    """

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class FileProblem(Exception):
    """A problem with one input file, described in our words (never a value or a path)."""


class RecipeError(Exception):
    """The recipe cannot be used: a configuration problem, so the run fails."""


class TaskFailed(Exception):
    """A task failed; the message is ours (safe for luigid, its state file, logs and mail)."""


# Library exceptions, by class name (pydicom's own classes are matched by name so that
# this module needs none of them), in words that say what kind of problem the file has.
_KINDS = {
    "InvalidDicomError": "not a DICOM file",
    "BytesLengthException": "an element's length does not fit its value representation",
    "NotImplementedError": "an element has a value representation pydicom does not know",
    "RecursionError": "sequences nested too deeply to read",
    "MemoryError": "too large to read into memory",
    "EOFError": "the file ends early (truncated)",
    "UnicodeDecodeError": "text in an unknown or wrong character set",
    "UnicodeEncodeError": "text that cannot be written in the file's character set",
    "OverflowError": "a number too large for its value representation",
    "struct.error": "a binary value of the wrong length",
    "error": "a binary value of the wrong length",
}
_ERRNO = {
    errno.ENOENT: "the file disappeared or is a broken link",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "a folder where a file was expected",
    errno.ELOOP: "a link loop",
    errno.EIO: "an input/output error reading the file",
    errno.ENOSPC: "no space left on the work disk",
    errno.ENXIO: "not a regular file",
}
_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")  # only "(gggg,eeee)": 8 bare digits may be a date


def file_error(exc: BaseException, doing: str = "", element: int | None = None) -> str:
    """One file's error text: what kind of problem, and where (an element tag), never a value.

    ``FileProblem`` texts are ours and pass as they are. For anything else the
    library's message is only searched for an element tag, which names an
    attribute, not a person. ``doing`` replaces the kind of problem for
    exceptions this module has no words for ("could not be written as DICOM");
    ``element`` is the tag being read when the caller knows it.
    """
    if isinstance(exc, FileProblem):
        return str(exc)
    name = type(exc).__name__
    if text := _errno_text(exc):
        return text
    if isinstance(exc, OSError) and exc.errno is None:  # pydicom's reader: no tag where one must be
        return f"the header is cut off or damaged ({name})"
    kind = (
        _KINDS.get(name)
        or doing
        or ("an input/output error" if isinstance(exc, OSError) else "the header could not be decoded")
    )
    where = tag_name(element) if element is not None else (element_named(str(exc)) if name != "RecursionError" else "")
    return f"{kind}{' at ' + where if where else ''} ({name})"


def _errno_text(exc: BaseException) -> str:
    """An ``OSError`` we have words for, as ``permission denied (PermissionError)``; '' otherwise."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return f"{_ERRNO[exc.errno]} ({type(exc).__name__})"
    return ""


def element_named(text: str) -> str:
    """The first element tag in a library message, as ``(0010,0020) PatientID``; '' if none."""
    match = _TAG.search(text)
    return tag_name(int(match.group(1) + match.group(2), 16)) if match else ""


def tag_name(tag: int) -> str:
    """``(0010,0020) PatientID``: how error texts name an element."""
    keyword = keyword_for_tag(tag)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}){' ' + keyword if keyword else ''}"


def redact(text: str, folder: str | None = None, values: Iterable[str] = ()) -> str:
    """Remove the batch folder path and any known identifying value from ``text``.

    A second line of defence for texts that came from outside (a service's
    reply); our own texts never hold values in the first place.
    """
    if folder:
        text = text.replace(folder, "<batch folder>")
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "[redacted]")
    return text


def describe(exc: BaseException) -> str:
    """A service or infrastructure error in one line: its class, and its message only for our own classes."""
    if isinstance(exc, (BatchError, FileProblem, RecipeError, TaskFailed)):
        return str(exc)
    if text := _errno_text(exc):
        return text
    code = getattr(exc, "code", None)  # google.api_core errors carry the HTTP status
    return f"{type(exc).__name__} (HTTP {code})" if isinstance(code, int) else type(exc).__name__
