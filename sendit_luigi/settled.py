"""The settled record: a rerun with nothing to do reads no batch.

A run that leaves every batch settled for good (uploaded, or ended empty or in an
error that is not tried again by itself) writes ``<work_dir>/settled.json`` as it
ends: the batch folders' stamp (``metrics.folders_stamp``), taken before their
states were read, and the keys of the batches that ended empty or in error.

The next run takes the upload as done, without opening any batch's checkpoints,
while the stamp still holds. Every checkpoint is written by a rename into its
batch's folder and removed by an unlink from it, and both move the folder's time;
a batch folder added to or removed from the input rewrites ``discovered.json``,
whose time is part of the stamp. The batches that ended empty or in error are
still run again when their input changes (``batches.retry_if_changed``), as in
any run. The operator's ``retry`` and ``reprocess`` drop the record themselves
(``forget``), so that what they ask for never depends on a folder's time.

At 100,000 batches, reading every batch's checkpoints made a rerun with nothing
to do take 14 s with them in the page cache, and 86 s without; with the record,
3.4 s and 17 s (BENCHMARKS.md, section 3).
"""

from __future__ import annotations

from pathlib import Path

from . import batches, metrics
from .workdir import read_json_or_none, write_json


def record_path(work_dir: Path) -> Path:
    return work_dir / "settled.json"


def record(work_dir: Path, stamp: str | None, outcome: batches.Outcome) -> None:
    """At the end of a run over every batch: record ``outcome`` if it settled them all for good.

    ``stamp`` is ``metrics.settled_stamp``, taken before the batches' states were read.
    """
    if stamp is not None and outcome.settled_for_good():
        write_json(record_path(work_dir), {"stamp": stamp, "ended": outcome.ended})
    else:
        forget(work_dir)


def forget(work_dir: Path) -> None:
    """Drop the record: an operator's ``retry`` or ``reprocess`` must be run, whatever the folders' times say."""
    record_path(work_dir).unlink(missing_ok=True)


def holds(work_dir: Path) -> bool:
    """Every batch is still as the last run settled it: no batch folder has changed since.

    Call it after this run's discovery (``batches.discover``), which rewrites
    ``discovered.json`` when a batch folder came or went.
    """
    try:
        settled = read_json_or_none(record_path(work_dir)) or {}
    except ValueError:  # not a record this package wrote (it writes whole files): as if there were none
        return False
    if "stamp" not in settled or metrics.folders_stamp(work_dir) != settled["stamp"]:
        return False
    return not any(batches.retry_if_changed(batches.batch(key)) for key in settled.get("ended", []))
