"""Read-only views of the work folder for the operator commands: a run summary and one batch.

Everything shown comes from the checkpoint files and holds batch keys, counts and
our own error texts: never a value, a file name or a folder name (``where`` is the
one command that prints a folder, on purpose).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from . import progress
from .batches import Batch, Outcome, batch, folder_times, kind, status
from .metrics import SETTLE_NS
from .records import HeadersRecord, IdentifiersRecord, Timing, UploadedRecord, finished_at
from .workdir import read_json_or_none, write_json

LAST_ERRORS = 5
SUMMARY_CACHE = "status-summary.json"


def summary(work_dir: Path, keys: list[str]) -> str:
    """Counts by status, files and GB done, the last run's rate and ETA, and the last few errors."""
    outcome = Outcome(total=len(keys))
    files = bytes_done = 0
    errors: list[tuple[float, str, str]] = []
    for key, (state, n, done, error, finished) in summary_entries(work_dir, keys).items():
        outcome.count(state)
        files += n
        bytes_done += done
        if state == "error":
            errors.append((finished, key, error))
    lines = [outcome.line(), f"files: {files}; done: {bytes_done / 1e9:.3f} GB ({bytes_done / 1e6:.2f} MB) of input"]
    run = progress.last_run(work_dir)
    if run is not None:
        lines.append(f"last run: {run.line()}")
    if errors:
        lines.append("last errors:")
        lines += [f"  {key}  {text}" for _, key, text in sorted(errors, reverse=True)[:LAST_ERRORS]]
    return "\n".join(lines)


# What the summary counts of one batch: its kind (batches.kind), files, bytes done, error text and when it ended.
Entry = tuple[str, int, int, str, float]


def entry(key: str) -> Entry:
    """Batch ``key``'s summary entry, read from its checkpoint files."""
    b = batch(key)
    state, result = status(b)
    if result is None:
        return (state, 0, 0, "", 0.0)
    done = result["bytes_in"] if state in ("uploaded", "done processing") else 0
    error, finished = (result["error"], finished_at(result)) if state == "error" else ("", 0.0)
    return (kind(b, state), result["files"], done, error, finished)


def summary_entries(work_dir: Path, keys: list[str]) -> dict[str, Entry]:
    """Every batch's summary entry: from the last summary's cache if its folder has not changed since, else read.

    Every checkpoint is written by a rename into its batch's folder and removed by an unlink
    from it; both move the folder's time. So an entry is cached with its folder's time
    (``work_dir/status-summary.json``), once that time has settled (``SETTLE_NS``), and stays
    good while the time stays the same: a summary during a run reads again only the batches
    that changed since the last one (at 10,000 batches, reading them all was half its time).
    """
    cache_file = work_dir / SUMMARY_CACHE
    cached = (read_json_or_none(cache_file) or {}).get("entries", {})
    times = folder_times(work_dir)
    settled = time.time_ns() - SETTLE_NS
    out: dict[str, Entry] = {}
    keep: dict[str, list] = {}
    for key in keys:
        mtime, hit = times.get(key), cached.get(key)
        out[key] = tuple(hit[1:]) if hit and hit[0] == mtime else entry(key)
        if mtime is not None and mtime < settled:
            keep[key] = [mtime, *out[key]]
    if keep != cached:
        with contextlib.suppress(OSError):  # a reader without write access: the next summary reads again
            write_json(cache_file, {"entries": keep})
    return out


def one_batch(b: Batch, current_recipe: str) -> str:
    """One batch: its status, each stage's outcome and time, its file errors."""
    state, result = status(b)
    headers: HeadersRecord | None = read_json_or_none(b.headers_file)
    ids: IdentifiersRecord | None = read_json_or_none(b.identifiers_file)
    lines = [f"batch {b.key}: {state}"]
    stages: dict[str, Timing] = result["stages"] if result else {}
    if headers is not None:
        good = sum("error" not in f for f in headers["files"])
        text = "ok" if headers["status"] == "ok" else f"{headers['status']}: {headers['error']}"
        readable = f"{good} of {len(headers['files'])} files readable"
        lines.append(f"  headers:     {text}; {readable}{_took(headers['stage'])}")
    elif "headers" in stages:
        lines.append(f"  headers:     done{_took(stages['headers'])} (work copy cleaned up)")
    if ids is not None:
        text = progress.identifiers_message(b.key, ids).split(": ", 1)[1]
        lines.append(f"  identifiers: {text}{_took(ids['stage'])}")
    if result is not None:
        text = progress.result_message(b.key, result).split(": ", 1)[1]
        lines.append(f"  de-identify: {text}{_took(stages.get('anonymize'))}")
        recipe = result.get("recipe_hash", "")
        if recipe:
            lines.append(f"  recipe:      {recipe} ({'current' if recipe == current_recipe else 'older'})")
    uploaded: UploadedRecord | None = read_json_or_none(b.uploaded_file)
    failed = read_json_or_none(b.upload_error_file)
    if uploaded:
        lines.append(f"  upload:      {uploaded['object']}{_took(uploaded.get('stage'))}")
    elif failed:
        lines.append(f"  upload:      failed: {failed['error']}")
    problems = [f"{e['file']}: {e.get('error')}" for e in (result["errors"] if result else [])]
    problems += [f"{q['file']}: quarantined ({q.get('reason')})" for q in (result["quarantine"] if result else [])]
    if problems:
        lines.append("  files:")
        lines += [f"    {p}" for p in problems]
    return "\n".join(lines)


def _took(stage: Timing | None) -> str:
    return f", {stage['seconds']:.2f} s" if stage else ""
