"""Finding batches and naming them without PHI.

A batch is one sub-folder of an input folder: one accession number, one study.
Folder names are accession numbers, which are PHI, and Luigi copies task
parameters into task ids, logs and the luigid web page. So a batch is known to
Luigi only by its *batch key*: a keyed hash of the folder's absolute path. The
key-to-folder mapping lives in the private work directory (``source.json``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .inputs import input_signature
from .progress import RUN
from .records import ResultRecord, finished_at
from .workdir import Keyed, load_secret, private_dir, read_json, read_json_or_none, write_json

KEY_LENGTH = 16


def retry_due(path: Path, record: Mapping[str, Any] | None = None) -> bool:
    """True when the checkpoint at ``path`` holds a retryable error from an earlier run.

    A retryable error (a service was down) recorded before this run started is tried
    again; one recorded during this run stands until the next, so Luigi sees the task
    as done for now.

    ``record`` is the checkpoint's content when the caller has read it already.
    """
    record = record if record is not None else read_json_or_none(path)
    return bool(record and record.get("retryable") and record.get("at", 0) < RUN.started)


@dataclass(frozen=True)
class Batch:
    """One batch's private work folder and the checkpoint files in it."""

    key: str
    dir: Path

    @property
    def source_file(self) -> Path:
        return self.dir / "source.json"

    @property
    def headers_file(self) -> Path:
        return self.dir / "headers.json"

    @property
    def identifiers_file(self) -> Path:
        return self.dir / "identifiers.json"

    @property
    def tarball(self) -> Path:
        return self.dir / "study.tar.gz"

    @property
    def row_file(self) -> Path:
        """The study's metadata row, as stage 3 made it (done batches only)."""
        return self.dir / "row.json"

    @property
    def result_file(self) -> Path:
        return self.dir / "result.json"

    @property
    def uploaded_file(self) -> Path:
        return self.dir / "uploaded.json"

    @property
    def upload_error_file(self) -> Path:
        return self.dir / "upload_error.json"

    @property
    def replaces_file(self) -> Path:
        """Written by ``reprocess``: the object an earlier recipe uploaded, which the next upload replaces."""
        return self.dir / "replaces.json"

    def folder(self) -> Path:
        """The input folder this batch reads (PHI: never log it): recorded, or as the last discovery found it."""
        source = read_json_or_none(self.source_file)
        return Path(source["folder"] if source is not None else discovered()[self.key])


def _settings() -> config.sendit:
    """``[sendit]``: where the work folder is and which input folders hold batches (the work folder's layout
    is this module's, so it is the one module besides the task and command layers that reads settings)."""
    settings: config.sendit = config.sendit.get()
    return settings


def _work_path() -> Path:
    return _settings().work_path()


def batch(key: str) -> Batch:
    return Batch(key, _batches_root(_settings()) / key)


@functools.lru_cache(maxsize=8)
def _batches_root(settings: config.sendit) -> Path:
    return settings.work_path() / "batches"  # once: ``batch`` is called for every batch, several times a run


def group_label(labels: Iterable[str]) -> str:
    """How luigid names a group of batches: its first key and how many more (``3f2a...+19``)."""
    first, *more = list(labels)
    return f"{first}+{len(more)}" if more else first


def group_key(keys: Iterable[str]) -> str:
    """A group's ``key`` parameter: ``@`` and a digest naming the file that lists its keys.

    luigid shows a running task's parameters in its task list and Workers tab; twenty
    comma-joined keys (360 characters) push the progress bar off the page. The list
    goes to ``<work_dir>/groups/<digest>.json`` on the host that runs the group.
    """
    keys = list(keys)
    if len(keys) == 1:
        return keys[0]
    text = ",".join(keys)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = private_dir(_work_path() / "groups") / f"{digest}.json"
    if not path.exists():
        write_json(path, keys)
    return "@" + digest


def group_keys(key: str) -> list[str]:
    """The batch keys a ``key`` parameter stands for (see ``group_key``)."""
    if key.startswith("@"):
        return read_json(_work_path() / "groups" / f"{key[1:]}.json")
    return key.split(",")


def work_hash() -> Keyed:
    """The keyed hash made from this work folder's secret (created on first use).

    The one source of batch keys, study claims and the local vault's coded ids.
    """
    return secret_hash(_settings().secret_path())


@functools.lru_cache(maxsize=4)
def secret_hash(secret_path: Path) -> Keyed:
    """The keyed hash made from the secret at ``secret_path`` (created on first use), once per process."""
    return Keyed(load_secret(secret_path))


def is_still_copying(name: str, suffixes: tuple[str, ...]) -> bool:
    return name.endswith(suffixes)


def scan(hasher: Keyed, ready_only: bool = True) -> dict[str, str]:
    """Batch key -> folder for every batch folder in the input folders; writes nothing."""
    cfg = _settings()
    suffixes = cfg.suffixes()
    found: dict[str, str] = {}
    for root in cfg.input_paths():
        if not root.is_dir():
            raise FileNotFoundError(f"input folder {root} does not exist or is not a folder ([sendit] input_folders)")
        with os.scandir(root) as entries:
            for entry in entries:
                if not entry.is_dir() or is_still_copying(entry.name, suffixes):
                    continue
                folder = os.path.realpath(entry.path)
                found[hasher.hex("batch", folder, KEY_LENGTH)] = folder
    if ready_only and cfg.ready_file:  # watch mode: only the folders the watcher saw finish copying
        ready = set(read_json_or_none(Path(cfg.ready_file)) or [])
        found = {k: v for k, v in found.items() if k in ready}
    return found


def discover(new: set[str] | None = None) -> list[str]:
    """Return the keys of all batch folders, in a stable order, and list them in ``discovered.json``.

    The order is by key, so it says nothing about folder names and stays the
    same from run to run. ``new`` gets the keys that have no work folder yet. A
    batch's own work folder is made when its first stage starts (``make_work_folder``): at
    100,000 batches, making them all here took most of the time before the first task.
    """
    found = scan(work_hash())
    root = private_dir(_batches_root(_settings()))
    if found != discovered():  # rewritten only on change: its time is part of the metrics stamp
        write_json(discovered_path(), found)  # private, as source.json: folder names are PHI
        discovered()  # read back once here: the task processes forked from this one find it cached
    if new is not None:
        new.update(found.keys() - set(os.listdir(root)))
    return sorted(found)


def make_work_folder(b: Batch) -> None:
    """Make batch ``b``'s private work folder and its ``source.json`` (before its first stage writes there)."""
    if not b.source_file.exists():
        folder = b.folder()  # from the discovery, before the folder is made
        private_dir(b.dir)
        write_json(b.source_file, {"folder": str(folder)})


def discovered_path() -> Path:
    return _work_path() / "discovered.json"


def discovered() -> dict[str, str]:
    """Batch key -> input folder, as the last discovery found them (``{}`` before the first)."""
    path = discovered_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    return _read_discovered(path, stat.st_ino, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_discovered(path: Path, inode: int, mtime_ns: int) -> dict[str, str]:
    return dict(read_json(path))  # read again once the file is replaced (a rename gives it a new inode)


def known_keys() -> list[str]:
    """Keys of every batch this work folder knows: recorded (a work folder), or found by the last discovery."""
    root = _batches_root(_settings())
    found = discovered()
    keys = set(found)
    if root.is_dir():  # a folder's source.json is looked for only when the discovery did not find it (10,000 stats)
        with os.scandir(root) as entries:
            keys.update(e.name for e in entries if e.name not in found and os.path.exists(f"{e.path}/source.json"))
    return sorted(keys)


def folder_times(work_dir: Path) -> dict[str, int]:
    """Batch key -> modification time (ns) of its work folder, for every work folder, in one listing."""
    root = work_dir / "batches"
    if not root.is_dir():
        return {}
    with os.scandir(root) as entries:
        return {e.name: e.stat(follow_symlinks=False).st_mtime_ns for e in entries if e.is_dir(follow_symlinks=False)}


def is_known(key: str) -> bool:
    return batch(key).source_file.exists() or key in discovered()


def shard_of(key: str, shards: int) -> int:
    return int(key[:8], 16) % max(shards, 1)


STATUSES = ("queued", "processing", "waiting", "done processing", "uploaded", "empty", "error")


def status(b: Batch) -> tuple[str, ResultRecord | None]:
    """The batch's status, read from its checkpoint files alone.

    Returns the status and the result record (or ``None`` before there is one).
    """
    result: ResultRecord | None = read_json_or_none(b.result_file)
    if result is None:
        started = b.headers_file.exists() or b.identifiers_file.exists()
        return ("processing" if started else "queued"), None
    if result["status"] == "done":
        return ("uploaded" if b.uploaded_file.exists() else "done processing"), result
    return result["status"], result


def with_row(b: Batch, result: ResultRecord) -> ResultRecord:
    """A done batch's result record with its metadata row (``row.json``; older work folders kept it inside)."""
    if "row" not in result:
        result["row"] = read_json(b.row_file)
    return result


def processed(b: Batch, result: ResultRecord | None = None) -> bool:
    """Stage 3 is finished for good: a result, not a retryable error, and its tarball.

    The tarball may be missing only when ``cleanup`` removed it after the upload.
    ``result`` is the batch's result record when the caller has read it already.
    """
    result = result if result is not None else read_json_or_none(b.result_file)
    if result is None or retry_due(b.result_file, result):
        return False
    return result["status"] != "done" or b.tarball.exists() or bool(result.get("cleaned"))


def reprocess(b: Batch) -> bool:
    """Make stage 3 and the upload run again for ``b`` at the next run; False if it has no result yet.

    What was uploaded is remembered (``replaces.json``), so that the new
    tarball may replace exactly that object, and nothing else.
    """
    result = read_json_or_none(b.result_file)
    if result is None:
        return False
    uploaded = read_json_or_none(b.uploaded_file)
    if uploaded and not b.replaces_file.exists():
        write_json(b.replaces_file, {"object": uploaded["object"], "md5": uploaded["md5"]})
    for path in (b.uploaded_file, b.upload_error_file, b.result_file, b.row_file, b.tarball):
        path.unlink(missing_ok=True)
    return True


def retry(b: Batch) -> bool:
    """Make ``b`` run again from stage 1 at the next run; False for an uploaded batch (see ``reprocess``)."""
    if b.uploaded_file.exists():
        return False
    for path in (b.headers_file, b.identifiers_file, b.result_file, b.row_file, b.tarball, b.upload_error_file):
        path.unlink(missing_ok=True)
    return True


def retry_if_changed(b: Batch, result: ResultRecord | None = None) -> bool:
    """Retry a batch that ended in error or empty, if its input changed since (file list, sizes, times).

    ``result`` is the batch's result record when the caller has read it already.
    """
    result = result if result is not None else read_json_or_none(b.result_file)
    if not result or result["status"] not in ("error", "empty") or result.get("retryable") or "input" not in result:
        return False  # retryable errors are tried again anyway, from the stage that failed
    if input_signature(b.folder()) == result["input"]:
        return False
    return retry(b)


def upload_settled(b: Batch, result: ResultRecord | None = None) -> bool:
    """Nothing is left to do for this batch in this run: processed, and uploaded unless it ended
    empty or in error. An upload that failed during this run is tried again at the next.

    ``result`` is the batch's result record when the caller has read it already.
    """
    result = result if result is not None else read_json_or_none(b.result_file)
    if not processed(b, result):
        return False
    if result["status"] != "done" or b.uploaded_file.exists():
        return True
    failed = read_json_or_none(b.upload_error_file)
    return bool(failed and failed.get("at", 0) >= RUN.started)


@dataclass
class Outcome:
    """What a run left its batches as: counts by status, for the last line and the exit status."""

    total: int = 0
    uploaded: int = 0
    not_uploaded: int = 0
    upload_failed: int = 0
    empty: int = 0
    error: int = 0
    error_this_run: int = 0
    waiting: int = 0
    retryable: int = 0  # batches whose error is tried again by the next run (a service was down, disk space)
    ended: list[str] = field(default_factory=list)  # keys of the batches that ended empty or in error

    def line(self) -> str:
        """``6 batches: 4 uploaded, 1 error, 1 empty`` (only the statuses that occur)."""
        parts = [
            (self.uploaded, "uploaded"),
            (self.not_uploaded, "done, not uploaded"),
            (self.upload_failed, "upload failed"),
            (self.error, "error"),
            (self.empty, "empty"),
            (self.waiting, "waiting for disk space"),
        ]
        counts = ", ".join(f"{n} {what}" for n, what in parts if n)
        return f"{self.total} batches: {counts or 'none'}"

    def add(self, b: Batch, state: str, result: ResultRecord | None) -> None:
        """Count one batch, whose ``status()`` is ``state`` and ``result``."""
        self.count(kind(b, state))
        if state == "error" and finished_at(result) >= RUN.started:
            self.error_this_run += 1
        if result is not None and result.get("retryable"):
            self.retryable += 1
        elif state in ("error", "empty"):
            self.ended.append(b.key)

    def settled_for_good(self) -> bool:
        """Every batch is uploaded, or ended empty or in an error that only a change of its input retries."""
        return self.uploaded + self.empty + self.error == self.total and not self.retryable

    def count(self, kind: str) -> None:
        """Count one batch of ``kind`` (``kind()``)."""
        if kind == "uploaded":
            self.uploaded += 1
        elif kind == "done processing":
            self.not_uploaded += 1
        elif kind == "upload failed":
            self.upload_failed += 1
        elif kind == "empty":
            self.empty += 1
        elif kind == "error":
            self.error += 1
        else:  # waiting, or queued or processing: the run did not get to it
            self.waiting += 1

    def problem(self, fail_on_batch_errors: bool) -> str:
        """Why the run should end non-zero, or "" when it should not."""
        reasons = []
        if self.waiting:
            reasons.append(
                f"{self.waiting} batches wait for disk space ([sendit] min_free_gb): run again once the "
                "uploads ([sendit] remove_after_upload) or cleanup have freed space"
            )
        if self.upload_failed:
            reasons.append(f"{self.upload_failed} uploads failed: they are tried again at the next run")
        if fail_on_batch_errors and self.error_this_run:
            reasons.append(f"{self.error_this_run} batches ended in error in this run ([sendit] fail_on_batch_errors)")
        return "; ".join(reasons)


def kind(b: Batch, state: str) -> str:
    """What ``Outcome`` counts batch ``b`` of ``status()`` ``state`` as: the state, or ``upload failed``."""
    return "upload failed" if state == "done processing" and b.upload_error_file.exists() else state


def outcome(group: list[Batch]) -> Outcome:
    """Count ``group`` by status, read from the checkpoint files alone."""
    out = Outcome(total=len(group))
    for b in group:
        out.add(b, *status(b))
    return out
