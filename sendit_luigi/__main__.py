"""The command line of the operator commands: ``python -m sendit_luigi --help``.

Argument parsing only: each command is a function of ``ops`` (``demo`` and
``sample-data`` are ``sample_data``'s, ``watch`` is ``watch``'s). The pipeline itself
runs through Luigi: ``luigi --module sendit_luigi ProcessAll``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import batches, ops, sample_data, watch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sendit_luigi",
        description="Operator commands for sendit-luigi. Run the pipeline with: "
        "luigi --module sendit_luigi ProcessAll [--local-scheduler] [--workers N]",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="make sample data and run the whole pipeline on it, locally")
    s.add_argument("dir", nargs="?", default="demo", help="folder for the demo (default: ./demo)")
    s.add_argument("--batches", type=int, default=4)
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(func=lambda a: sample_data.run_demo(Path(a.dir), a.batches, a.workers))

    s = sub.add_parser("sample-data", help="write sample batch folders made from real DICOM test files")
    s.add_argument("dir")
    s.add_argument("--batches", type=int, default=4)
    s.add_argument("--files", type=int, default=4)
    s.set_defaults(func=lambda a: sample_data.write_samples(Path(a.dir), a.batches, a.files))

    s = sub.add_parser("status", help="per-batch status from the checkpoints (no scheduler needed)")
    s.add_argument("key", nargs="?", help="one batch: its stages, times and errors")
    s.add_argument("--only", choices=batches.STATUSES, help="only batches with this status")
    s.add_argument("--errors", action="store_true", help="list each batch's error messages instead")
    s.add_argument("--summary", action="store_true", help="counts, sizes, the last run's rate and ETA, last errors")
    s.set_defaults(func=lambda a: ops.status(a.key, a.only, a.errors, a.summary))

    s = sub.add_parser("where", help="print one batch's input folder (PHI: for the operator on this host)")
    s.add_argument("key")
    s.set_defaults(func=lambda a: ops.where(a.key))

    s = sub.add_parser("retry", help="run batches again from the start at the next run")
    s.add_argument("keys", nargs="*", help="batch keys")
    s.add_argument("--errors", action="store_true", help="every batch that ended in error")
    s.set_defaults(func=lambda a: ops.retry(a.keys, a.errors))

    s = sub.add_parser("profile", help="what happens to each attribute of PS3.15 Table E.1-1 (markdown)")
    s.add_argument("--summary", action="store_true", help="counts by outcome, with examples (README's table)")
    s.set_defaults(func=lambda a: ops.profile(a.summary))

    s = sub.add_parser("reprocess", help="de-identify and upload batches again at the next run (explicitly)")
    s.add_argument("keys", nargs="*", help="batch keys")
    s.add_argument(
        "--older-recipe",
        action="store_true",
        help="every batch made with another recipe or other profile options than the current ones",
    )
    s.set_defaults(func=lambda a: ops.reprocess(a.keys, a.older_recipe))

    s = sub.add_parser("dry-run", help="list the batches a run would take and what they would produce")
    s.add_argument("--max-batches", type=int, default=0)
    s.set_defaults(func=lambda a: ops.dry_run(a.max_batches))

    s = sub.add_parser("inspect", help="what the recipe will do to each header element of a batch (values redacted)")
    s.add_argument("folder", help="a batch folder")
    s.set_defaults(func=lambda a: ops.inspect(Path(a.folder)))

    s = sub.add_parser("audit", help="export or read the re-identification key (PHI, for IRB-approved use)")
    s.add_argument("action", choices=["export", "read"])
    s.add_argument("file")
    s.set_defaults(func=lambda a: ops.audit(a.action, Path(a.file)))

    s = sub.add_parser("watch", help="poll the input folders and process folders once they stop changing")
    s.add_argument("--interval", type=float, default=10.0, help="seconds between polls (default 10)")
    s.add_argument(
        "--quiet",
        type=float,
        default=60.0,
        help="seconds a folder's file list and sizes must stay unchanged (default 60)",
    )
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--scheduler-host", help="use luigid on this host (default: the local scheduler)")
    s.add_argument("--scheduler-port", type=int)
    s.add_argument("--once", action="store_true", help="stop when every folder seen is processed")
    s.set_defaults(
        func=lambda a: watch.main(a.quiet, a.interval, a.workers, a.scheduler_host, a.scheduler_port, a.once)
    )

    s = sub.add_parser("report", help="HTML and PNG charts from the metrics (GB/day, batches/hour ...)")
    s.add_argument("--output", help="folder for report.html and report.png (default: the work dir)")
    s.set_defaults(func=lambda a: ops.report(Path(a.output) if a.output else None))

    s = sub.add_parser("cleanup", help="remove the work files of batches that finished uploading")
    s.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    s.add_argument(
        "--delete-inputs",
        action="store_true",
        help="also delete the input folders of uploaded batches (never of any other batch)",
    )
    s.set_defaults(func=lambda a: ops.clean_up(a.dry_run, a.delete_inputs))

    s = sub.add_parser("metrics", help="write the metrics CSV now")
    s.add_argument("--output", help="default: <work_dir>/metrics.csv")
    s.set_defaults(func=lambda a: ops.write_metrics(Path(a.output) if a.output else None))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
