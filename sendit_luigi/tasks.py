"""The pipeline as a Luigi DAG. Read this file to see the whole job.

Per batch (one input sub-folder = one study), three tasks, each checkpointed
by files in the batch's private work folder::

    ExtractHeaders(key) -> GetIdentifiers(key) -> Anonymize(key)
       headers.json        identifiers.json        study.tar.gz + row.json + result.json

handed to the scheduler a chunk at a time, then, once every batch is processed::

    ProcessChunk(i)  (runs Anonymize for its [sendit] chunk_size batches, with a worker of their own)
      <- ProcessBatches  (wrapper: requires every chunk)
      <- UploadShard(shard=i, shards=N) for i in 0..N-1   ([upload] workers = N)
      <- UploadAll   (wrapper)
      <- ExportMetrics  (work_dir/metrics.csv)
      <- ProcessAll  (what you run: `luigi --module sendit_luigi ProcessAll`;
                      it ends with the run's one-line batch summary)

A batch is named only by its key, a keyed hash of its folder path, because
Luigi shows parameters in task ids, logs and the luigid page, and folder names
are accession numbers. Per-batch tasks are *batchable*: Luigi's scheduler hands
a worker up to ``[sendit] group_size`` batches of one stage at a time; the key
parameter of such a group is ``@`` and a digest naming its key list, and luigid
shows its ``label``, the first key and how many more (``progress.py``).

A run that leaves every batch settled (uploaded, empty, or in an error that only
a change of its input retries) writes ``settled.json``; while no batch folder has
changed since, the next run takes the upload as done and reads no batch (``settled.py``).

Problems with one file or one batch do not fail a task: they are recorded in
the checkpoints (``status`` shows them) and the batch ends as ``error`` or
``empty``. Errors from an outside service are marked retryable; the next run
tries those batches again.
"""

from __future__ import annotations

import functools
import gc
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import luigi
import luigi.interface
import luigi.worker
from luigi.execution_summary import LuigiStatusCode
from luigi.parameter import ParameterVisibility

from . import alerts, batches, config, dryrun, logs, metrics, progress, settled, stages, views
from .errors import TaskFailed, describe
from .identifiers import backend_module, get_backend
from .storage import check_settings, get_store
from .workdir import lock_work_dir, read_json_or_none, read_text_or_none, write_bytes


class Reported:
    """Mixed into every task: a failure is told in our words, never a library's.

    Luigi logs a failed task's traceback, sends ``on_failure``'s text to luigid
    (its error page and state file) and to the failure mail. A library's message
    can quote a header value or a path, so any exception that leaves a task's
    ``run`` is replaced by a ``TaskFailed`` that names the task, the kind of
    error and where in this package it happened.
    """

    task_id: str  # Luigi's, on the task class this is mixed into

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:
            setattr(cls, "run", _reported(cls.__dict__["run"]))  # noqa: B010 - mypy: a mixin has no run

    def on_failure(self, exception: BaseException) -> str:
        """The text luigid shows and keeps, and the alert mail's: ours, short, without a traceback."""
        text = describe(exception)
        alerts.task_failed(config.alerts.get().recipients(), self.task_id, text)
        return text

    def show(self, message: str | None, percent: float | None = None) -> None:
        """Show ``message`` and ``percent`` on this task in luigid (Luigi sets its callbacks when it runs the task)."""
        task: Any = self
        if message is not None:
            task.set_status_message(message)
        if percent is not None:
            task.set_progress_percentage(round(percent))


def _reported(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(run)
    def wrapper(self: Any) -> Any:
        try:
            return run(self)
        except TaskFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised in our words
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "sendit_luigi" in f.filename]
            where = (
                f" at {frames[-1].filename.rsplit('sendit_luigi', 1)[-1].lstrip('/')}:{frames[-1].lineno}"
                if frames
                else ""
            )
            raise TaskFailed(f"{self.get_task_family()} failed: {describe(exc)}{where}") from None

    return wrapper


class BatchTask(Reported, luigi.Task):
    """One stage for one batch, or for a group of batches when Luigi batches them.

    luigid names a task by its ``label``: the batch key, or for a group its first
    key and how many more. The full key list is a hidden parameter.
    """

    key = luigi.Parameter(
        batch_method=batches.group_key,
        visibility=ParameterVisibility.HIDDEN,  # luigid shows the label; the task id is made from it
        description="Pseudonymous batch key; for a group Luigi runs at once, @ and the digest of its key list.",
    )
    label = luigi.Parameter(
        default="",
        batch_method=batches.group_label,
        description="What luigid shows: the batch key, or a group's first key and how many more (set from key).",
    )

    @classmethod
    def get_param_values(cls, params: Any, args: Any, kwargs: Any) -> list[tuple[str, Any]]:
        values = dict(super().get_param_values(params, args, kwargs))
        if not values["label"]:
            values["label"] = batches.group_label(batches.group_keys(values["key"]))
        return list(values.items())

    priority = 10  # before the next ProcessChunk (0): the batches of the chunks in flight go first
    _advanced = 0.0  # when the progress bar last moved (time.monotonic)

    @property
    def max_batch_size(self) -> int:  # type: ignore[override]  # Luigi's is a class attribute
        return config.sendit.get().group_size

    def group(self) -> list[batches.Batch]:
        return [batches.batch(k) for k in batches.group_keys(self.key)]

    def tell(self, b: batches.Batch, message: str) -> None:
        """Show ``message`` on batch ``b``'s own task in luigid (not on the whole group's)."""
        progress.tell(self, type(self)(key=b.key).task_id, message)

    def advance(self, done: float) -> None:
        """The group's progress bar (luigid copies it to the group's batches): ``done`` batches of the group.

        At most two updates a second, and the last: each is a call to the scheduler, and a group
        of quick batches would otherwise make one per batch."""
        now, whole = time.monotonic(), len(self.group())
        if done < whole and now - self._advanced < 0.5:
            return
        self._advanced = now
        self.show(None, 100 * done / whole)

    def reporter(self, stage: str, index: int) -> Callable[[int, int, int], None]:
        """A per-file progress callback for batch ``index`` of the group: at most two messages a second,
        and none for a one-file batch (its outcome is told as soon as its one file is done)."""
        last = [0.0]
        b = self.group()[index]

        def report(done: int, files: int, errors: int) -> None:
            now = time.monotonic()
            if files <= 1 or (done < files and now - last[0] < 0.5):
                return
            last[0] = now
            self.tell(b, f"{b.key}: {stage}: {done}/{files} files, {errors} errors")
            self.advance(index + (done / files if files else 1))

        return report


class ExtractHeaders(BatchTask):
    """Stage 1: read every file's header; record per-file errors."""

    def output(self) -> list[luigi.LocalTarget]:
        return [luigi.LocalTarget(str(b.headers_file)) for b in self.group()]

    def run(self) -> None:
        for i, b in enumerate(self.group()):
            headers = stages.extract(b, stage_settings(), self.reporter("reading headers", i))
            self.tell(b, progress.headers_message(b.key, headers))
            self.advance(i + 1)


class GetIdentifiers(BatchTask):
    """Stage 2: coded patient id, coded accession and date shift from the identifiers backend."""

    def requires(self) -> list[ExtractHeaders]:
        return [ExtractHeaders(b.key) for b in self.group()]

    def output(self) -> list[luigi.LocalTarget]:
        return [luigi.LocalTarget(str(b.identifiers_file)) for b in self.group()]

    def complete(self) -> bool:
        return super().complete() and not any(batches.retry_due(b.identifiers_file) for b in self.group())

    def run(self) -> None:
        group = self.group()
        # on the group's task, which luigid copies to each of its batches: one call, not one a batch
        self.show(f"asking the identifiers backend (one call for {len(group)} batches)", 50)
        settings = stage_settings()
        records = stages.assign(group, get_backend(settings.hasher), settings)
        for b in group:
            self.tell(b, progress.identifiers_message(b.key, records[b.key]))
        self.advance(len(group))


class Anonymize(BatchTask):
    """Stage 3: apply the recipe, leak-check every file, pack ``study.tar.gz``."""

    def requires(self) -> list[GetIdentifiers]:
        return [GetIdentifiers(b.key) for b in self.group()]

    def output(self) -> list[luigi.LocalTarget]:
        return [luigi.LocalTarget(str(b.result_file)) for b in self.group()]

    def complete(self) -> bool:
        return all(batches.processed(b) for b in self.group())

    def run(self) -> None:
        group = self.group()
        files = errors = 0
        for i, b in enumerate(group):
            result = stages.anonymize(b, stage_settings(), self.reporter("de-identifying", i))
            self.tell(b, progress.result_message(b.key, result))
            if result["status"] == "error" and config.alerts.get().on_batch_error:
                alerts.batch_error(config.alerts.get().recipients(), b.key, result["status"], result["error"])
            self.advance(i + 1)
            files += result["files"]
            errors += result["status"] == "error"
        progress.record(self, len(group), files, errors)


class ProcessBatches(Reported, luigi.WrapperTask):
    """Every batch found in the input folders, processed (done, empty or error).

    With ``max_batches`` (sendit's ``start_queue --number N``), only the first N
    batches not yet done, in key order; the next run takes the next N.
    """

    max_batches = luigi.IntParameter(default=0, description="Process at most this many batches (0: all).")

    def all_keys(self) -> list[str]:
        if not hasattr(self, "_all"):
            self._new: set[str] = set()  # no work folder yet: nothing of them is done
            self._all = batches.discover(self._new)
        return self._all

    def batch_keys(self) -> list[str]:
        """This run's batches: all of them, or the next ``max_batches`` not yet settled."""
        if not hasattr(self, "_keys"):
            keys, todo = [], 0
            for key in self.all_keys():  # each result read once: at 100,000 batches, reads are the cost
                done = False  # a batch without a work folder has nothing done
                if key not in self._new:
                    b = batches.batch(key)
                    result = read_json_or_none(b.result_file)
                    if batches.retry_if_changed(b, result):  # a batch in error whose input changed is read again
                        result = None
                    if self.max_batches > 0 and batches.upload_settled(b, result):
                        continue
                    done = batches.processed(b, result)
                keys.append(key)
                todo += not done
                if len(keys) == self.max_batches:
                    break
            self._keys = keys
            progress.start(config.sendit.get().work_path(), ProcessAll(max_batches=self.max_batches).task_id, todo)
        return self._keys

    def chunk_size(self) -> int:
        """``[sendit] chunk_size``, or less for a small run, so that every worker has a chunk of its own."""
        workers = max(luigi.interface.core().workers, 1)
        return max(1, min(config.sendit.get().chunk_size, math.ceil(len(self.batch_keys()) / workers)))

    def chunk(self, index: int) -> list[str]:
        """The batch keys of chunk ``index``: ``chunk_size()`` of this run's, in key order."""
        size = self.chunk_size()
        return self.batch_keys()[index * size : (index + 1) * size]

    def requires(self) -> list[ProcessChunk]:
        prepare_run()  # also when run by itself (``luigi --module sendit_luigi ProcessBatches``)
        chunks = math.ceil(len(self.batch_keys()) / self.chunk_size())
        return [ProcessChunk(self.max_batches, i) for i in range(chunks)]


class ProcessChunk(Reported, luigi.Task):
    """``[sendit] chunk_size`` of this run's batches, in key order, run by a Luigi worker of their own.

    A Luigi scheduler keeps every task a worker gave it for as long as that worker
    lives, and the local one walks all of them on every request for work: the tasks of
    a whole archive would make each batch cost more than the last. So a chunk hands its
    batches' tasks to a new worker (``luigi.build``, against the same luigid, or a
    local scheduler of its own) that ends with the chunk, and the scheduler lets them
    go: the cost per batch stays flat from a thousand batches to a hundred thousand.
    ``--workers N`` runs N chunks at once.
    """

    max_batches = luigi.IntParameter(default=0)
    index = luigi.IntParameter(description="Which chunk of this run's batches, in key order.")

    def keys(self) -> list[str]:
        return ProcessBatches(self.max_batches).chunk(self.index)

    def complete(self) -> bool:
        return all(batches.processed(batches.batch(k)) for k in self.keys())

    def run(self) -> None:
        if luigi.worker.fork_lock.locked():
            # Held by the worker that forked this task process, and so never released here: a
            # new worker's keep-alive thread would wait for it forever. (Luigi forks under it.)
            luigi.worker.fork_lock = threading.Lock()
        done = luigi.build([Anonymize(k) for k in self.keys()], workers=1, detailed_summary=True)
        if done.status not in (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY):
            raise TaskFailed(f"chunk {self.index}: {done.status.value[1]}; see the batch tasks that failed")


class UploadShard(Reported, luigi.Task):
    """Upload the done batches whose key falls in this shard (``hash(key) % shards``)."""

    shard = luigi.IntParameter()
    shards = luigi.IntParameter()
    max_batches = luigi.IntParameter(default=0)

    def requires(self) -> ProcessBatches:
        return ProcessBatches(self.max_batches)

    def mine(self) -> Iterator[batches.Batch]:
        keys = self.requires().batch_keys()
        return (batches.batch(k) for k in keys if batches.shard_of(k, self.shards) == self.shard)

    def pending(self) -> list[batches.Batch]:
        return [b for b in self.mine() if not batches.upload_settled(b)]

    def complete(self) -> bool:
        return all(batches.upload_settled(b) for b in self.mine())  # stops at the first batch left to do

    def run(self) -> None:
        """Failed uploads are recorded per batch (``upload_error.json``), not raised: the metrics
        are still written, and ``ProcessAll`` ends the run with an error that counts them."""
        todo = [b for b in self.pending() if batches.status(b)[0] == "done processing"]
        store = get_store()
        step = max(config.upload.get().rows_per_request, 1)
        remove = stage_settings().remove_after_upload
        failed: list[str] = []
        for i in range(0, len(todo), step):
            self.show(f"uploading: {i}/{len(todo)} batches sent, {len(failed)} failed", 100 * i / len(todo))
            failed += stages.upload(todo[i : i + step], store, config.upload.get().threads, remove)
        self.show(f"uploading: {len(todo) - len(failed)}/{len(todo)} batches done, {len(failed)} failed", 100)


class UploadAll(Reported, luigi.WrapperTask):
    """The upload, split into ``[upload] workers`` shards that Luigi runs in parallel."""

    max_batches = luigi.IntParameter(default=0)

    def requires(self) -> list[UploadShard]:
        prepare_run()  # also when run by itself: the shards' processes start warm
        n = max(config.upload.get().workers, 1)
        return [UploadShard(shard=i, shards=n, max_batches=self.max_batches) for i in range(n)]

    def complete(self) -> bool:
        """Done without reading any batch while the last run's settled record holds (``settled``)."""
        prepare_run()
        ProcessBatches(self.max_batches).all_keys()  # this run's discovery first: a new batch moves the stamp
        return settled.holds(config.sendit.get().work_path()) or super().complete()


class ExportMetrics(Reported, luigi.Task):
    """``<work_dir>/metrics.csv``: one row per batch the work folder knows (done or not). Rewritten only on change."""

    max_batches = luigi.IntParameter(default=0)

    def requires(self) -> UploadAll:
        return UploadAll(self.max_batches)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(metrics.metrics_path(config.sendit.get().work_path())))

    def keys(self) -> list[str]:
        """Every batch the work folder knows, not only this run's (a watch cycle, --max-batches)."""
        ProcessBatches(self.max_batches).all_keys()  # discovers (records) this run's batches first
        return batches.known_keys()

    def rendered(self) -> bytes:
        return metrics.render_csv(metrics.frame(self.keys()))

    def complete(self) -> bool:
        if not self.output().exists() or not all(r.complete() for r in luigi.task.flatten(self.requires())):
            return False
        work = config.sendit.get().work_path()
        stamp = metrics.folders_stamp(work)
        if stamp is not None and stamp == read_text_or_none(metrics.stamp_path(work)):
            return True  # no batch folder changed since the CSV was rendered
        with open(self.output().path, "rb") as fh:
            return fh.read() == self.rendered()

    def run(self) -> None:
        work = config.sendit.get().work_path()
        stamp = metrics.settled_stamp(work)  # before rendering: a change made meanwhile moves it
        keys = self.keys()
        rows = metrics.frame(keys)  # every batch's checkpoints, read once for the CSV and the summary
        write_bytes(metrics.metrics_path(work), metrics.render_csv(rows))
        if stamp is not None:
            write_bytes(metrics.stamp_path(work), stamp.encode())
        else:
            metrics.stamp_path(work).unlink(missing_ok=True)
        views.summary_entries(work, keys)  # primes `status --summary`: its next answer reads only what changes
        summary = metrics.summary(rows)
        self.show(summary, 100)
        stages.log.info("metrics: %s", summary)


class ProcessAll(Reported, luigi.WrapperTask):
    """Everything: process all batches, upload them, export the metrics.

    ``--max-batches N`` takes only the next N batches not yet done.
    ``--dry-run`` lists what would run and what it would produce, and writes nothing.
    """

    max_batches = luigi.IntParameter(default=0, description="Process at most this many batches not yet done.")
    dry_run = luigi.BoolParameter(default=False, description="List the batches and outputs; write nothing.")

    def requires(self) -> ExportMetrics | list[ExportMetrics]:
        if self.dry_run:
            return []
        prepare_run()
        return ExportMetrics(self.max_batches)

    def complete(self) -> bool:
        return False if self.dry_run else super().complete()

    def run(self) -> None:
        if self.dry_run:
            plan = dryrun.plan(self.max_batches, config.storage.get().collection)
            print(dryrun.render(plan, config.sendit.get().work_path()), flush=True)
            return
        work = config.sendit.get().work_path()
        stamp = metrics.settled_stamp(work)  # before reading the batches: a change made meanwhile moves it
        outcome = batches.outcome([batches.batch(k) for k in ProcessBatches(self.max_batches).batch_keys()])
        if not self.max_batches:  # every batch: the next run may take them as settled
            settled.record(work, stamp, outcome)
        print(outcome.line(), flush=True)
        self.show(f"{progress.run_line()}; {outcome.line()}", 100)
        problem = outcome.problem(config.sendit.get().fail_on_batch_errors)
        if problem:
            raise TaskFailed(problem)


def luigi_command(task: str = "ProcessAll", *args: str) -> list[str]:
    """The ``luigi`` command line that runs ``task`` of this package with this Python."""
    return [sys.executable, "-m", "luigi", "--module", "sendit_luigi", task, *args]


@functools.cache
def stage_settings() -> stages.Settings:
    """What the stages take from ``luigi.cfg`` (``[sendit]``, ``[deid]``), read once a process."""
    return stages.Settings.from_config(config.sendit.get(), config.deid.get())


_prepared = False


def prepare_run() -> None:
    """Check what can be checked before any work, and load what every task needs (once a process).

    A misspelt or unsafe setting, a missing storage setting or a broken recipe
    stops the run now, not after hours of work. Loading the recipe and the backends here, in the scheduling
    process, also means that task processes forked from it (``--workers`` > 1)
    start warm instead of each importing and parsing them again.
    """
    global _prepared
    if _prepared:
        return
    progress.begin_run()  # before any checkpoint is looked at: what was recorded before is an earlier run's
    logs.setup()
    config.validate()
    if luigi.interface.core().local_scheduler:  # two such runs would do the same work and trip over each other
        lock_work_dir(config.sendit.get().work_path())
    check_settings()
    backend_module()
    stage_settings()  # the recipe and its profile
    # Move everything loaded so far out of the garbage collector's sight: a forked task
    # process then does not touch (and so copy) the parent's whole heap when it collects.
    gc.freeze()
    _prepared = True
