"""Per-batch metrics, read from the checkpoint files alone (no database).

One row per batch, empty and errored ones included: status, file counts, bytes
in and out, and start, end and seconds of each stage. Only batch keys and
counts appear; error texts were already cleaned of PHI when they were recorded.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .batches import batch, folder_times, status
from .workdir import read_json_or_none

if TYPE_CHECKING:
    import pandas as pd

STAGES = ("headers", "identifiers", "anonymize", "upload")
COLUMNS = [
    "batch",
    "status",
    "files",
    "files_error",
    "files_quarantined",
    "files_skipped",
    "files_cleaned",
    "bytes_in",
    "bytes_out",
    *[f"{stage}_{part}" for stage in STAGES for part in ("start", "end", "seconds")],
    "error",
    "errors",
    "recipe",
    "run",
]
TIMES = [f"{stage}_{part}" for stage in STAGES for part in ("start", "end")]


def batch_row(key: str) -> dict:
    b = batch(key)
    state, result = status(b)
    row: dict = {"batch": key, "status": state}
    if result is None:
        headers = read_json_or_none(b.headers_file)
        if headers:
            row.update(files=len(headers["files"]), bytes_in=headers["bytes_in"])
            row.update({f"headers_{p}": headers["stage"][p] for p in ("start", "end", "seconds")})
        return row
    row.update(
        files=result["files"],
        files_error=result["files_error"],
        files_quarantined=len(result.get("quarantine", [])),
        files_skipped=len(result.get("skipped", [])),
        files_cleaned=len(result.get("pixels_cleaned", [])),
        recipe=result.get("recipe_hash", ""),
        run=result.get("run", ""),
        bytes_in=result["bytes_in"],
        bytes_out=result["bytes_out"],
        error=result.get("error", ""),
        errors="; ".join(
            [f"{e['file']}: {e['error']}" for e in result["errors"]]
            + [f"{q['file']}: quarantined ({q['reason']})" for q in result.get("quarantine", [])]
            + [f"{k['file']}: skipped ({k['reason']})" for k in result.get("skipped", [])]
            + [f"{c['file']}: pixels cleaned ({c['reason']})" for c in result.get("pixels_cleaned", [])]
        ),
    )
    stages = dict(result["stages"])
    upload_error = read_json_or_none(b.upload_error_file)
    if upload_error and state == "done processing":
        row["error"] = f"upload failed: {upload_error['error']}"
    uploaded = read_json_or_none(b.uploaded_file)
    if uploaded:
        stages["upload"] = uploaded["stage"]
    for stage, timing in stages.items():
        row.update({f"{stage}_{p}": timing[p] for p in ("start", "end", "seconds")})
    return row


def frame(keys: list[str]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the operator commands that need no frame start faster

    df = pd.DataFrame([batch_row(k) for k in keys], columns=COLUMNS)
    for col in ("files", "files_error", "files_quarantined", "files_skipped", "files_cleaned", "bytes_in", "bytes_out"):
        df[col] = df[col].fillna(0).astype("int64")
    for col in ("error", "errors", "recipe", "run"):
        df[col] = df[col].fillna("")
    return df


def render_csv(rows: pd.DataFrame) -> bytes:
    """The CSV of ``frame``'s rows: times as ISO 8601 in UTC with milliseconds (``2026-11-26T17:19:20.123+00:00``)."""
    import pandas as pd

    df = rows.copy()
    for col in TIMES:
        df[col] = pd.to_datetime(df[col], unit="s", utc=True).map(
            lambda t: "" if pd.isna(t) else t.isoformat(timespec="milliseconds")
        )
    return df.to_csv(index=False, float_format="%.3f").encode()


def summary(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts().to_dict()
    parts = [f"{n} {s}" for s, n in sorted(counts.items())]
    return f"{len(df)} batches: " + (", ".join(parts) if parts else "none")


def metrics_path(work_dir: Path) -> Path:
    return work_dir / "metrics.csv"


def stamp_path(work_dir: Path) -> Path:
    """Beside ``metrics.csv``: the state of the batch folders it was rendered from (``folders_stamp``)."""
    return work_dir / "metrics.stamp"


# Checkpoint times come from the kernel's coarse clock (a few ms); a folder changed this
# recently may yet change again within the same tick without its time moving.
SETTLE_NS = 100_000_000


def folders_stamp(work_dir: Path) -> str | None:
    """The number of batch folders and the newest change to any of them, or None if too recent to tell.

    Every checkpoint is written by a rename into its batch's folder and removed by an unlink
    from it; both move the folder's time. So two equal stamps mean that no metrics row can
    have changed in between, and comparing them costs a ``stat`` a batch instead of reading
    every checkpoint (seconds at 100,000 batches).
    """
    now = time.time_ns()
    times = folder_times(work_dir)
    newest = max(times.values(), default=0)
    with contextlib.suppress(FileNotFoundError):  # the batches found but not started yet are rows too
        newest = max(newest, (work_dir / "discovered.json").stat().st_mtime_ns)
    return f"{len(times)} {newest}" if newest < now - SETTLE_NS else None


def settled_stamp(work_dir: Path, wait_s: float = 2.0) -> str | None:
    """``folders_stamp``, waiting up to ``wait_s`` for a change that is still too recent to settle."""
    deadline = time.monotonic() + wait_s
    while (stamp := folders_stamp(work_dir)) is None and time.monotonic() < deadline:
        time.sleep(SETTLE_NS / 1e9)
    return stamp


def last_run(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the most recent run that processed batches (all rows, for work folders older than runs)."""
    runs = df[df["run"] != ""]
    if runs.empty:
        return df
    latest = runs.loc[runs["anonymize_end"].idxmax(), "run"]
    return df[df["run"] == latest]


def throughput(df: pd.DataFrame) -> dict[str, float]:
    """sendit's figures: GB a day and batches an hour, over the span one run processed its batches in.

    Pass one run's rows (``last_run``): across runs, the hours between them would count as work.
    """
    done = df[df["anonymize_end"].notna()]
    if done.empty:
        return {"batches": 0, "gigabytes": 0.0, "hours": 0.0, "gb_per_day": 0.0, "batches_per_hour": 0.0}
    span = max(float(done["anonymize_end"].max() - done["headers_start"].min()), 1e-9)
    gigabytes = float(done["bytes_in"].sum()) / 1e9
    return {
        "batches": len(done),
        "gigabytes": gigabytes,
        "hours": span / 3600,
        "gb_per_day": gigabytes / span * 86400,
        "batches_per_hour": len(done) / span * 3600,
    }


def report(keys: list[str], out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.html`` (with the PNG inside) from the metrics; return both paths."""
    import base64
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = frame(keys)
    figures = throughput(last_run(df))
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    done = df[df["anonymize_end"].notna()].sort_values("anonymize_end")
    if not done.empty:
        t0 = done["headers_start"].min()
        hours = (done["anonymize_end"] - t0) / 3600
        ax[0, 0].plot(hours, done["bytes_in"].cumsum() / 1e9, drawstyle="steps-post")
    ax[0, 0].set(title="Throughput", xlabel="hours since the first batch started", ylabel="GB processed")
    stage_means = [df[f"{s}_seconds"].mean() for s in STAGES]
    ax[0, 1].bar(STAGES, [0 if pd.isna(v) else v for v in stage_means])
    ax[0, 1].set(title="Time per stage (mean per batch)", ylabel="seconds")
    ax[1, 0].hist(df["bytes_in"] / 1e6, bins=20)
    ax[1, 0].set(title="Batch sizes", xlabel="MB in", ylabel="batches")
    problems = {
        "batches in error": int((df["status"] == "error").sum()),
        "empty batches": int((df["status"] == "empty").sum()),
        "file errors": int(df["files_error"].sum()),
        "files quarantined": int(df["files_quarantined"].sum()),
    }
    ax[1, 1].bar(list(problems), list(problems.values()), color="tab:red")  # their own scale, not next to 10,000
    ax[1, 1].set(title=f"Errors ({summary(df)})", ylabel="count")
    ax[1, 1].yaxis.get_major_locator().set_params(integer=True)
    ax[1, 1].tick_params(axis="x", labelsize=8)
    fig.suptitle(
        f"sendit-luigi, last run: {figures['gb_per_day']:.2f} GB/day, {figures['batches_per_hour']:.1f} batches/hour"
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "report.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    rows = "".join(
        f"<tr><th>last run: {html.escape(k)}</th><td>{v if isinstance(v, int) else f'{v:,.2f}'}</td></tr>"
        for k, v in figures.items()
    )
    image = base64.b64encode(png.read_bytes()).decode()
    page = (
        f"<!doctype html><meta charset=utf-8><title>sendit-luigi report</title>"
        f"<h1>sendit-luigi report</h1><p>{html.escape(summary(df))}</p><table>{rows}</table>"
        f"<img alt='metrics' src='data:image/png;base64,{image}'>"
    )
    page_path = out_dir / "report.html"
    page_path.write_text(page)
    return png, page_path
