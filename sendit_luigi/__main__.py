"""Operator commands: ``python -m sendit_luigi --help``.

The pipeline itself runs through Luigi (``luigi --module sendit_luigi ProcessAll``);
these commands help around it. They read settings from the same ``luigi.cfg``
(or ``LUIGI_CONFIG_PATH``) and read only checkpoint files: no scheduler needed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import batches, cleanup, config, dryrun, metrics, stages, views
from .tasks import luigi_command
from .workdir import write_bytes


def demo_cfg(root: Path) -> str:
    """The demo's luigi.cfg: the embedded backends, everything under ``root``."""
    return config.render_cfg(
        {
            "sendit": {"input_folders": f"{root}/input", "work_dir": f"{root}/work"},
            "identifiers": {"backend": "local"},
            "storage": {"backend": "local", "local_root": f"{root}/bucket", "collection": "DEMO"},
            "upload": {"workers": "10"},
        }
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Make sample data, run ProcessAll on it with the embedded defaults, say where things are."""
    from .sample_data import make_demo

    root = Path(args.dir).absolute()
    studies = make_demo(root / "input", args.batches)
    cfg = root / "luigi.cfg"
    cfg.write_text(demo_cfg(root))
    print(f"sample input: {len(studies)} batch folders (+1 still copying) in {root / 'input'}", flush=True)
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg))
    command = luigi_command("ProcessAll", "--local-scheduler", "--workers", str(args.workers), "--log-level", "WARNING")
    code = subprocess.call(command, env=env, cwd=root)  # cwd: no stray ./luigi.cfg
    print()
    print(f"config:      {cfg}")
    print(f"tarballs:    {root / 'bucket' / 'Collection'}")
    for tarball in sorted((root / "bucket").rglob("*.tar.gz")):
        print(f"             {tarball.relative_to(root / 'bucket')}")
    print(f"rows:        {root / 'bucket' / 'metadata.sqlite'} (table dicom)")
    print(f"metrics:     {root / 'work' / 'metrics.csv'}")
    print(f"status:      LUIGI_CONFIG_PATH={cfg} {sys.executable} -m sendit_luigi status")
    return code


def cmd_sample_data(args: argparse.Namespace) -> int:
    from .sample_data import make_demo

    made = make_demo(Path(args.dir), args.batches, args.files)
    print(f"wrote {len(made)} sample batches to {Path(args.dir).absolute()}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """A table of every known batch: key, status, files, errors, seconds; or their error messages."""
    if args.key:
        return show_batch(args.key)
    if args.summary:
        print(views.summary(config.sendit.get().work_path(), batches.known_keys()))
        return 0
    df = metrics.frame(batches.known_keys())
    if args.only:
        df = df[df["status"] == args.only]
    if args.errors:  # sendit's batch_logs: every batch's messages
        df = df[(df["error"] != "") | (df["errors"] != "")]
        for _, row in df.iterrows():
            print(f"{row['batch']}  {row['status']}")
            if row["error"]:
                print(f"    batch: {row['error']}")
            for item in filter(None, row["errors"].split("; ")):
                print(f"    file:  {item}")
        if df.empty:
            print("no errors")
        return 0
    seconds = df[[c for c in df.columns if c.endswith("_seconds")]].fillna(0).sum(axis=1)
    current = stages.recipe().hash
    made = df["recipe"].where(df["recipe"] == "", df["recipe"].map(lambda h: "current" if h == current else "older"))
    table = df.assign(seconds=seconds.round(2), recipe=made)[
        ["batch", "status", "files", "files_error", "seconds", "recipe"]
    ]
    print(table.to_string(index=False) if len(table) else "no batches")
    print(metrics.summary(df))
    older = int((made == "older").sum())
    if older:
        print(
            f"{older} batches were made with an older recipe or profile options (current: {current}); "
            "python -m sendit_luigi reprocess --older-recipe makes them again at the next run"
        )
    return 0


def unknown(keys: list[str]) -> bool:
    """Say so (and return True) when one of ``keys`` is no batch of this work folder."""
    missing = [k for k in keys if not batches.batch(k).source_file.exists()]
    if missing:
        print(f"no batch {missing[0]} in this work folder", file=sys.stderr)
    return bool(missing)


def show_batch(key: str) -> int:
    if unknown([key]):
        return 2
    print(views.one_batch(batches.batch(key), stages.recipe().hash))
    return 0


def cmd_where(args: argparse.Namespace) -> int:
    """Print one batch's input folder (for the operator on the secure host)."""
    if unknown([args.key]):
        return 2
    b = batches.batch(args.key)
    print("PHI: the folder name may name a patient; keep it on this host, out of tickets and mail", file=sys.stderr)
    print(b.folder())
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Make named batches, or every batch in error, run again from the start at the next run."""
    keys = list(args.keys)
    if args.errors:
        keys += [k for k in batches.known_keys() if batches.status(batches.batch(k))[0] == "error"]
    if unknown(keys):
        return 2
    refused = [k for k in sorted(set(keys)) if not batches.retry(batches.batch(k))]
    for key in refused:
        print(f"batch {key} is uploaded; python -m sendit_luigi reprocess {key} makes it again")
    print(f"{len(set(keys)) - len(refused)} batches will run again from the start at the next run")
    return 1 if refused else 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    """Make stage 3 and the upload run again at the next run, for named batches or those of an older recipe."""
    keys = list(args.keys)
    if args.older_recipe:
        current = stages.recipe().hash
        df = metrics.frame(batches.known_keys())
        keys += [k for k, h in zip(df["batch"], df["recipe"], strict=True) if h and h != current]
    if not keys:
        print("nothing to reprocess: name batch keys, or --older-recipe")
        return 0
    done = [k for k in sorted(set(keys)) if batches.reprocess(batches.batch(k))]
    print(
        f"{len(done)} batches will be de-identified and uploaded again at the next run "
        "(each uploaded tarball is replaced, and only that one)"
    )
    return 0


def cmd_dry_run(args: argparse.Namespace) -> int:
    """What ``ProcessAll`` would do now; writes nothing."""
    print(dryrun.render(dryrun.plan(args.max_batches)))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Each header element of a sample file with what the recipe does to it; values redacted."""
    from .inspection import inspect

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"{folder} is not a folder", file=sys.stderr)
        return 2
    print(inspect(folder, stages.recipe()))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Every attribute of PS3.15 Table E.1-1 and what the configured profile and recipe do to it."""
    from .inspection import profile_markdown, profile_summary

    print(profile_summary(stages.recipe()) if args.summary else profile_markdown(stages.recipe()), end="")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Export (0600) or read back the re-identification key. Sensitive: see README."""
    from . import audit

    if args.action == "export":
        data = audit.export(Path(args.file))
        print(f"wrote {len(data['batches'])} batches and the vault tables to {args.file} (mode 0600; PHI)")
    else:
        data = audit.read(Path(args.file))
        print(data["warning"])
        for row in data["batches"]:
            print(
                "  ".join(
                    f"{k}={row[k]}"
                    for k in ("batch_key", "folder", "patient_id", "coded_patient_id", "accession", "coded_accession")
                )
            )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Poll the input folders; run the pipeline on folders that have finished arriving."""
    from . import watch

    return watch.main(args.quiet, args.interval, args.workers, args.scheduler_host, args.scheduler_port, args.once)


def cmd_report(args: argparse.Namespace) -> int:
    """Charts of throughput, time per stage, sizes and errors, with GB/day and batches/hour."""
    out = Path(args.output) if args.output else config.sendit.get().work_path()
    png, page = metrics.report(batches.known_keys(), out)
    figures = metrics.throughput(metrics.last_run(metrics.frame(batches.known_keys())))
    rate = f"{figures['gb_per_day']:.2f} GB/day, {figures['batches_per_hour']:.1f} batches/hour"
    print(f"last run: {rate}; wrote {page} and {png}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove work files of uploaded batches (and, when asked, their input folders)."""
    plan = cleanup.plan(batches.known_keys(), args.delete_inputs)
    if not plan:
        print("nothing to clean up: no uploaded batch has work files left")
        return 0
    total = sum(item.bytes for item in plan)
    for item in plan:
        what = ", ".join(p.name for p in item.work_files)
        if item.input_folder:
            what += f"{', ' if what else ''}input folder ({item.input_files} files)"
        print(f"{'would remove' if args.dry_run else 'removing'} {item.key}: {what}")
    verb = "would free" if args.dry_run else "freed"
    if not args.dry_run:
        cleanup.apply(plan)
    print(f"{len(plan)} batches, {verb} {total / 1e6:.1f} MB")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Write the metrics CSV now (the pipeline writes it at the end of each run too)."""
    out = Path(args.output) if args.output else metrics.metrics_path(config.sendit.get().work_path())
    keys = batches.known_keys()
    write_bytes(out, metrics.render_csv(keys))
    print(f"{metrics.summary(metrics.frame(keys))}; written to {out}")
    return 0


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
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("sample-data", help="write sample batch folders made from real DICOM test files")
    s.add_argument("dir")
    s.add_argument("--batches", type=int, default=4)
    s.add_argument("--files", type=int, default=4)
    s.set_defaults(func=cmd_sample_data)

    s = sub.add_parser("status", help="per-batch status from the checkpoints (no scheduler needed)")
    s.add_argument("key", nargs="?", help="one batch: its stages, times and errors")
    s.add_argument("--only", choices=batches.STATUSES, help="only batches with this status")
    s.add_argument("--errors", action="store_true", help="list each batch's error messages instead")
    s.add_argument("--summary", action="store_true", help="counts, sizes, the last run's rate and ETA, last errors")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("where", help="print one batch's input folder (PHI: for the operator on this host)")
    s.add_argument("key")
    s.set_defaults(func=cmd_where)

    s = sub.add_parser("retry", help="run batches again from the start at the next run")
    s.add_argument("keys", nargs="*", help="batch keys")
    s.add_argument("--errors", action="store_true", help="every batch that ended in error")
    s.set_defaults(func=cmd_retry)

    s = sub.add_parser("profile", help="what happens to each attribute of PS3.15 Table E.1-1 (markdown)")
    s.add_argument("--summary", action="store_true", help="counts by outcome, with examples (README's table)")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("reprocess", help="de-identify and upload batches again at the next run (explicitly)")
    s.add_argument("keys", nargs="*", help="batch keys")
    s.add_argument(
        "--older-recipe",
        action="store_true",
        help="every batch made with another recipe or other profile options than the current ones",
    )
    s.set_defaults(func=cmd_reprocess)

    s = sub.add_parser("dry-run", help="list the batches a run would take and what they would produce")
    s.add_argument("--max-batches", type=int, default=0)
    s.set_defaults(func=cmd_dry_run)

    s = sub.add_parser("inspect", help="what the recipe will do to each header element of a batch (values redacted)")
    s.add_argument("folder", help="a batch folder")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("audit", help="export or read the re-identification key (PHI, for IRB-approved use)")
    s.add_argument("action", choices=["export", "read"])
    s.add_argument("file")
    s.set_defaults(func=cmd_audit)

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
    s.set_defaults(func=cmd_watch)

    s = sub.add_parser("report", help="HTML and PNG charts from the metrics (GB/day, batches/hour ...)")
    s.add_argument("--output", help="folder for report.html and report.png (default: the work dir)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("cleanup", help="remove the work files of batches that finished uploading")
    s.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    s.add_argument(
        "--delete-inputs",
        action="store_true",
        help="also delete the input folders of uploaded batches (never of any other batch)",
    )
    s.set_defaults(func=cmd_cleanup)

    s = sub.add_parser("metrics", help="write the metrics CSV now")
    s.add_argument("--output", help="default: <work_dir>/metrics.csv")
    s.set_defaults(func=cmd_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
