"""Telling an operator when something fails (sendit used Opbeat).

Mail goes out through Luigi's own notification settings: ``[email] method``,
``sender`` and ``[smtp] host``/``port`` (see Luigi's docs), to the addresses in
``[alerts] receiver``. Luigi's built-in failure mail (``[email] receiver``)
carries the full traceback, which may quote file paths; these alerts carry
batch keys, task names and our own (already PHI-free) error texts only.

Two kinds: a task failed (every task's ``on_failure``, see ``tasks.Reported``),
and a batch ended in error (bad input, or a service that stayed down).
"""

from __future__ import annotations

import logging

import luigi
import luigi.notifications

from .errors import describe

log = logging.getLogger("sendit_luigi")


def send(receivers: list[str], subject: str, message: str) -> None:
    if not receivers:
        return
    sender = luigi.notifications.email().sender
    try:
        luigi.notifications.send_email(f"[sendit-luigi] {subject}", message, sender, receivers)
    except Exception as exc:  # noqa: BLE001 - an alert that cannot go out must not fail the run
        log.error("could not send an alert: %s", describe(exc))


def batch_error(receivers: list[str], key: str, status: str, error: str) -> None:
    send(
        receivers,
        f"batch {key} ended with {status}",
        f"Batch {key}: {error}\n\nDetails: python -m sendit_luigi status --errors",
    )


def task_failed(receivers: list[str], task_id: str, text: str) -> None:
    """A task failed; ``text`` is our own words (``tasks.Reported`` made sure of that)."""
    send(receivers, f"task {task_id} failed", f"Task {task_id} failed: {text}\n\nRun the same command again to resume.")
