"""Read-only views of the work folder for the operator commands: a run summary and one batch.

Everything shown comes from the checkpoint files and holds batch keys, counts and
our own error texts: never a value, a file name or a folder name (``where`` is the
one command that prints a folder, on purpose).
"""

from __future__ import annotations

from pathlib import Path

from . import progress
from .batches import Batch, Outcome, batch, status
from .records import HeadersRecord, IdentifiersRecord, Timing, UploadedRecord, finished_at
from .workdir import read_json_or_none

LAST_ERRORS = 5


def summary(work_dir: Path, keys: list[str]) -> str:
    """Counts by status, files and GB done, the last run's rate and ETA, and the last few errors."""
    outcome = Outcome(total=len(keys))
    files = bytes_done = 0
    errors: list[tuple[float, str, str]] = []
    for key in keys:
        b = batch(key)
        state, result = status(b)
        outcome.add(b, state, result)
        if result is None:
            continue
        files += result["files"]
        if state in ("uploaded", "done processing"):
            bytes_done += result["bytes_in"]
        if state == "error":
            errors.append((finished_at(result), key, result["error"]))
    lines = [outcome.line(), f"files: {files}; done: {bytes_done / 1e9:.3f} GB ({bytes_done / 1e6:.2f} MB) of input"]
    run = progress.last_run(work_dir)
    if run is not None:
        lines.append(f"last run: {run.line()}")
    if errors:
        lines.append("last errors:")
        lines += [f"  {key}  {text}" for _, key, text in sorted(errors, reverse=True)[:LAST_ERRORS]]
    return "\n".join(lines)


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
