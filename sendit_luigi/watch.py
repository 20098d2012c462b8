"""Watch mode: run the pipeline on batch folders as soon as they have finished arriving.

``python -m sendit_luigi watch`` polls the input folders. A folder counts as
finished when its name has no ``.tmp``/``part`` suffix, it holds at least one
file, and its file list and sizes have not changed for the quiet period. Then
the pipeline runs through the ``luigi`` command (local scheduler, or luigid
with ``--scheduler-host``) on the finished folders only: the watcher lists
their keys in ``<work_dir>/watch-ready.json`` and passes that file as
``[sendit] ready_file``. SIGTERM (or Ctrl-C) stops it cleanly: a run in
progress is stopped too, and resumes where it was at the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import config
from .batches import batch, retry_if_changed, scan, upload_settled, work_hash
from .inputs import walk_files
from .tasks import luigi_command
from .workdir import private_dir, write_json

log = logging.getLogger("sendit_luigi")


def signature(folder: Path) -> tuple:
    """The folder's file list and sizes."""
    try:
        return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size) for p in walk_files(folder)))
    except OSError:
        return ("<unreadable>",)


class Watcher:
    def __init__(
        self, quiet: float, luigi_args: list[str], ready_file: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet = quiet
        self.luigi_args = luigi_args
        self.clock = clock
        self.seen: dict[str, tuple[tuple, float]] = {}  # key -> (signature, unchanged since)
        self.stopping = False
        self.child: subprocess.Popen | None = None
        self.ready_file = ready_file  # the keys of the finished folders, for the run it starts

    def finished(self) -> list[str]:
        """Keys of folders that are finished and not yet fully processed and uploaded."""
        now = self.clock()
        ready = []
        found = scan(work_hash(), ready_only=False)
        for key, folder in found.items():
            sig = signature(Path(folder))
            old = self.seen.get(key)
            if old is None or old[0] != sig:
                self.seen[key] = (sig, now)
                continue
            b = batch(key)
            # a batch in error whose input changed since (a fixed re-send) is retried too
            if sig and now - old[1] >= self.quiet and (not upload_settled(b) or retry_if_changed(b)):
                ready.append(key)
        for gone in set(self.seen) - set(found):
            del self.seen[gone]
        return sorted(ready)

    def run_pipeline(self, keys: list[str]) -> int:
        private_dir(self.ready_file.parent)
        write_json(self.ready_file, keys)
        command = luigi_command("ProcessAll", "--sendit-ready-file", str(self.ready_file), *self.luigi_args)
        log.info("watch: running the pipeline on %d finished batches", len(keys))
        self.child = subprocess.Popen(command)
        code = self.child.wait()
        self.child = None
        return code

    def stop(self, *_args: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def loop(self, interval: float, once: bool = False) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while not self.stopping:
            keys = self.finished()
            if keys:
                code = self.run_pipeline(keys)
                if code != 0 and not self.stopping:
                    log.error("watch: the pipeline exited with %d; the next poll tries again", code)
            if once and not keys and all(upload_settled(batch(k)) for k in self.seen):
                break
            deadline = time.monotonic() + interval
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, interval))
        return 0


def luigi_args(workers: int, scheduler_host: str | None, scheduler_port: int | None) -> list[str]:
    args = ["--workers", str(workers)]
    if scheduler_host:
        args += ["--scheduler-host", scheduler_host]
        if scheduler_port:
            args += ["--scheduler-port", str(scheduler_port)]
    else:
        args.append("--local-scheduler")
    return args


def main(
    quiet: float, interval: float, workers: int, scheduler_host: str | None, scheduler_port: int | None, once: bool
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ready_file = config.sendit.get().work_path() / "watch-ready.json"
    watcher = Watcher(quiet, luigi_args(workers, scheduler_host, scheduler_port), ready_file)
    log.info(
        "watch: polling every %gs, a folder is finished after %gs without changes (pid %d)",
        interval,
        quiet,
        os.getpid(),
    )
    return watcher.loop(interval, once)
