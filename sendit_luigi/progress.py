"""What luigid shows: each batch's own message, and the run's progress on ``ProcessAll``.

Luigi runs up to ``[sendit] group_size`` batches of one stage in one task (Luigi
batching). luigid shows the group's task and each batch's own task; a message set
on the group's task is copied to all its batches, so a batch would show another
batch's outcome. Here every message goes to the task of the batch it is about,
through the scheduler the task process already talks to, and ends with that
batch's outcome: ``done: 40 files``, ``ERROR: ...``, ``EMPTY: ...``.

The run's progress (batches done of this run's total, files a second, an ETA and
the errors so far) goes on ``ProcessAll``'s task. Task processes of this run add
one line per finished group to ``<work_dir>/runs/<run>.progress``, and sum it.
Messages hold batch keys, counts and our own error texts: never a value or a path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import HeadersRecord, IdentifiersRecord, ResultRecord
from .workdir import private_dir


def scheduler_of(task: Any) -> Any:
    """The scheduler a running task reports to (Luigi's status reporter holds it), or None."""
    reporter = getattr(task.set_status_message, "__self__", None)
    return getattr(reporter, "_scheduler", None)


def tell(task: Any, task_id: str, message: str, percent: int | None = None) -> None:
    """Set ``message`` (and ``percent``) on the task ``task_id`` of the scheduler ``task`` runs under."""
    scheduler = scheduler_of(task)
    if scheduler is None or task_id == task.task_id:
        task.set_status_message(message)
        if percent is not None:
            task.set_progress_percentage(percent)
        return
    scheduler.set_task_status_message(task_id, message)
    if percent is not None:
        scheduler.set_task_progress_percentage(task_id, percent)


def headers_message(key: str, headers: HeadersRecord) -> str:
    files = headers["files"]
    if headers["status"] != "ok":
        return f"{key}: {headers['status'].upper()}: {headers['error']}"
    good = sum("error" not in f for f in files)
    return f"{key}: headers read: {good}/{len(files)} files readable"


def identifiers_message(key: str, record: IdentifiersRecord) -> str:
    if record["status"] == "ok":
        return f"{key}: identifiers assigned ({record['backend']})"
    if record["status"] == "skipped":
        return f"{key}: no identifiers asked: the batch has no readable file"
    return f"{key}: ERROR: {record['error']}"


def result_message(key: str, result: ResultRecord) -> str:
    """A batch's stage-3 outcome in one line: ``done: 40 files; 2 file errors; 1 quarantined``."""
    if result["status"] != "done":
        return f"{key}: {result['status'].upper()}: {result['error']}"
    packed = result["files"] - result["files_error"] - len(result["quarantine"]) - len(result["skipped"])
    extra = [
        (result["files_error"], "file errors"),
        (len(result["quarantine"]), "quarantined"),
        (len(result["skipped"]), "skipped"),
        (len(result["pixels_cleaned"]), "pixels cleaned"),
    ]
    return f"{key}: done: {packed} files" + "".join(f"; {n} {what}" for n, what in extra if n)


# -- the run's progress ------------------------------------------------------------


@dataclass
class Run:
    """This run: its id, the ProcessAll task that shows its progress, and how many batches it has to do."""

    name: str
    started: float
    task_id: str = ""
    total: int = 0
    path: Path | None = None


def _new_run() -> Run:
    return Run(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}", time.time())


# This process's run: the operator commands read checkpoints as of their start; a
# ``luigi`` run starts its own in ``tasks.prepare_run`` (``begin_run``).
RUN = _new_run()


def begin_run() -> None:
    """Start this process's run now: its name, its start time, no total yet (task processes inherit it)."""
    fresh = _new_run()
    RUN.name, RUN.started, RUN.task_id, RUN.total, RUN.path = fresh.name, fresh.started, "", 0, None


def start(work_dir: Path, task_id: str, total: int) -> None:
    """Called by the scheduling process before task processes fork: they inherit it."""
    RUN.task_id, RUN.total = task_id, total
    if total == 0:  # nothing to do: a rerun that does no work writes nothing
        return
    RUN.path = private_dir(work_dir / "runs") / f"{RUN.name}.progress"
    if not RUN.path.exists():
        RUN.path.write_text(f"# {total} {RUN.started:.3f}\n")  # what status --summary reads back


def record(task: Any, batches: int, files: int, errors: int) -> None:
    """Add a finished group to the run's count and show the run's progress on ProcessAll."""
    if RUN.path is None or not RUN.task_id:
        return
    fd = os.open(RUN.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{batches} {files} {errors}\n".encode())  # one short append: whole, whoever else writes
    finally:
        os.close(fd)
    counts = read_run(RUN.path)
    tell(task, RUN.task_id, run_line(counts), round(100 * counts.done / RUN.total) if RUN.total else 100)


@dataclass
class Counts:
    """A run's progress file, read back: ``status --summary`` shows the last run's."""

    total: int = 0
    started: float = 0.0
    updated: float = 0.0
    done: int = 0
    files: int = 0
    errors: int = 0

    def line(self) -> str:
        seconds = max(self.updated - self.started, 1e-9)
        if self.done >= self.total:
            return f"{self.done}/{self.total} batches, {self.files / seconds:.0f} files/s, finished"
        return run_message(self.done, self.total, self.files, self.errors, seconds)


def read_run(path: Path) -> Counts:
    counts = Counts(updated=path.stat().st_mtime)
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            total, started = line[1:].split()
            counts.total, counts.started = int(total), float(started)
            continue
        b, f, e = (int(x) for x in line.split())
        counts.done, counts.files, counts.errors = counts.done + b, counts.files + f, counts.errors + e
    return counts


def last_run(work_dir: Path) -> Counts | None:
    """The progress of the most recent run that did work, or None."""
    runs = sorted((work_dir / "runs").glob("*.progress"), key=lambda p: p.stat().st_mtime)
    return read_run(runs[-1]) if runs else None


def run_line(counts: Counts | None = None) -> str:
    """This run's progress: ``120/200 batches, 35 files/s, ETA 2 min, 1 error``.

    ``counts`` is this run's progress file read back, when the caller has read it already.
    """
    if counts is None:
        counts = read_run(RUN.path) if RUN.path is not None and RUN.path.exists() else Counts()
    return run_message(counts.done, RUN.total, counts.files, counts.errors, time.time() - RUN.started)


def run_message(done: int, total: int, files: int, errors: int, seconds: float) -> str:
    """``120/200 batches, 35 files/s, ETA 2 min, 1 error``."""
    rate = done / seconds if seconds > 0 else 0
    eta = (total - done) / rate if rate else 0
    eta_text = f"{eta / 60:.0f} min" if eta >= 90 else f"{eta:.0f} s"
    return (
        f"{done}/{total} batches, {files / seconds if seconds > 0 else 0:.0f} files/s, "
        f"ETA {eta_text}, {errors} error{'s' if errors != 1 else ''}"
    )
