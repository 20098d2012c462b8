"""The operator commands, one function each (``python -m sendit_luigi --help`` lists them).

They read the same ``luigi.cfg`` (or ``LUIGI_CONFIG_PATH``) as the pipeline and look
only at the checkpoint files, through the read-only views of ``views`` and
``metrics``; ``retry``, ``reprocess`` and ``clean_up`` change checkpoints, never an
input. What they print names batches by their keys: ``where`` is the one command
that prints a folder, on purpose.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import batches, cleanup, config, dryrun, inspection, metrics, settled, stages, views
from .deidentify import Recipe
from .workdir import write_bytes


def recipe() -> Recipe:
    """The configured recipe (the one a run would use)."""
    return stages.load_recipe(config.sendit.get(), config.deid.get())


def status(key: str | None = None, only: str | None = None, errors: bool = False, summary: bool = False) -> int:
    """A table of every known batch: key, status, files, errors, seconds; or their error messages."""
    if key:
        return show_batch(key)
    if summary:
        print(views.summary(config.sendit.get().work_path(), batches.known_keys()))
        return 0
    df = metrics.frame(batches.known_keys())
    if only:
        df = df[df["status"] == only]
    if errors:  # sendit's batch_logs: every batch's messages
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
    current = recipe().hash
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
    missing = [k for k in keys if not batches.is_known(k)]
    if missing:
        print(f"no batch {missing[0]} in this work folder", file=sys.stderr)
    return bool(missing)


def show_batch(key: str) -> int:
    if unknown([key]):
        return 2
    print(views.one_batch(batches.batch(key), recipe().hash))
    return 0


def where(key: str) -> int:
    """Print one batch's input folder (for the operator on the secure host)."""
    if unknown([key]):
        return 2
    b = batches.batch(key)
    print("PHI: the folder name may name a patient; keep it on this host, out of tickets and mail", file=sys.stderr)
    print(b.folder())
    return 0


def retry(keys: list[str], errors: bool = False) -> int:
    """Make named batches, or every batch in error, run again from the start at the next run."""
    keys = list(keys)
    if errors:
        keys += [k for k in batches.known_keys() if batches.status(batches.batch(k))[0] == "error"]
    if unknown(keys):
        return 2
    settled.forget(config.sendit.get().work_path())  # before the checkpoints go: a kill in between loses nothing
    refused = [k for k in sorted(set(keys)) if not batches.retry(batches.batch(k))]
    for key in refused:
        print(f"batch {key} is uploaded; python -m sendit_luigi reprocess {key} makes it again")
    print(f"{len(set(keys)) - len(refused)} batches will run again from the start at the next run")
    return 1 if refused else 0


def reprocess(keys: list[str], older_recipe: bool = False) -> int:
    """Make stage 3 and the upload run again at the next run, for named batches or those of an older recipe."""
    keys = list(keys)
    if older_recipe:
        current = recipe().hash
        df = metrics.frame(batches.known_keys())
        keys += [k for k, h in zip(df["batch"], df["recipe"], strict=True) if h and h != current]
    if not keys:
        print("nothing to reprocess: name batch keys, or --older-recipe")
        return 0
    settled.forget(config.sendit.get().work_path())
    done = [k for k in sorted(set(keys)) if batches.reprocess(batches.batch(k))]
    print(
        f"{len(done)} batches will be de-identified and uploaded again at the next run "
        "(each uploaded tarball is replaced, and only that one)"
    )
    return 0


def dry_run(max_batches: int = 0) -> int:
    """What ``ProcessAll`` would do now; writes nothing."""
    print(dryrun.render(dryrun.plan(max_batches, config.storage.get().collection), config.sendit.get().work_path()))
    return 0


def inspect(folder: Path) -> int:
    """Each header element of a sample file with what the recipe does to it; values redacted."""
    if not folder.is_dir():
        print(f"{folder} is not a folder", file=sys.stderr)
        return 2
    print(inspection.inspect(folder, recipe()))
    return 0


def profile(summary: bool = False) -> int:
    """Every attribute of PS3.15 Table E.1-1 and what the configured profile and recipe do to it."""
    rules = recipe()
    print(inspection.profile_summary(rules) if summary else inspection.profile_markdown(rules), end="")
    return 0


def audit(action: str, file: Path) -> int:
    """Export (0600) or read back the re-identification key. Sensitive: see README."""
    from . import audit as key_file

    if action == "export":
        data = key_file.export(file, config.identifiers.get().vault_path())
        print(f"wrote {len(data['batches'])} batches and the vault tables to {file} (mode 0600; PHI)")
    else:
        data = key_file.read(file)
        print(data["warning"])
        for row in data["batches"]:
            print(
                "  ".join(
                    f"{k}={row[k]}"
                    for k in ("batch_key", "folder", "patient_id", "coded_patient_id", "accession", "coded_accession")
                )
            )
    return 0


def report(output: Path | None = None) -> int:
    """Charts of throughput, time per stage, sizes and errors, with GB/day and batches/hour."""
    out = output or config.sendit.get().work_path()
    png, page = metrics.report(batches.known_keys(), out)
    figures = metrics.throughput(metrics.last_run(metrics.frame(batches.known_keys())))
    rate = f"{figures['gb_per_day']:.2f} GB/day, {figures['batches_per_hour']:.1f} batches/hour"
    print(f"last run: {rate}; wrote {page} and {png}")
    return 0


def clean_up(dry_run: bool = False, delete_inputs: bool = False) -> int:
    """Remove work files of uploaded batches (and, when asked, their input folders)."""
    plan = cleanup.plan(batches.known_keys(), config.sendit.get().input_roots() if delete_inputs else None)
    if not plan:
        print("nothing to clean up: no uploaded batch has work files left")
        return 0
    total = sum(item.bytes for item in plan)
    for item in plan:
        what = ", ".join(p.name for p in item.work_files)
        if item.input_folder:
            what += f"{', ' if what else ''}input folder ({item.input_files} files)"
        print(f"{'would remove' if dry_run else 'removing'} {item.key}: {what}")
    verb = "would free" if dry_run else "freed"
    if not dry_run:
        cleanup.apply(plan)
    print(f"{len(plan)} batches, {verb} {total / 1e6:.1f} MB")
    return 0


def write_metrics(output: Path | None = None) -> int:
    """Write the metrics CSV now (the pipeline writes it at the end of each run too)."""
    out = output or metrics.metrics_path(config.sendit.get().work_path())
    keys = batches.known_keys()
    rows = metrics.frame(keys)
    write_bytes(out, metrics.render_csv(rows))
    print(f"{metrics.summary(rows)}; written to {out}")
    return 0
