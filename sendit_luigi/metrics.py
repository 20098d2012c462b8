"""Per-batch metrics, read from the checkpoint files alone (no database).

One row per batch, empty and errored ones included: status, file counts, bytes
in and out, and start, end and seconds of each stage. Only batch keys and
counts appear; error texts were already cleaned of PHI when they were recorded.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .batches import batch, status
from .workdir import read_json_or_none

STAGES = ("headers", "identifiers", "anonymize", "upload")
COLUMNS = [
    "batch",
    "status",
    "files",
    "files_error",
    "files_quarantined",
    "bytes_in",
    "bytes_out",
    *[f"{stage}_{part}" for stage in STAGES for part in ("start", "end", "seconds")],
    "error",
    "errors",
]


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
        bytes_in=result["bytes_in"],
        bytes_out=result["bytes_out"],
        error=result.get("error", ""),
        errors="; ".join(
            [f"{e['file']}: {e['error']}" for e in result["errors"]]
            + [f"{q['file']}: quarantined ({q['reason']})" for q in result.get("quarantine", [])]
        ),
    )
    stages = dict(result["stages"])
    upload_error = read_json_or_none(b.dir / "upload_error.json")
    if upload_error and state == "done processing":
        row["error"] = f"upload failed: {upload_error['error']}"
    uploaded = read_json_or_none(b.uploaded_file)
    if uploaded:
        stages["upload"] = uploaded["stage"]
    for stage, timing in stages.items():
        row.update({f"{stage}_{p}": timing[p] for p in ("start", "end", "seconds")})
    return row


def frame(keys: list[str]) -> pd.DataFrame:
    df = pd.DataFrame([batch_row(k) for k in keys], columns=COLUMNS)
    for col in ("files", "files_error", "files_quarantined", "bytes_in", "bytes_out"):
        df[col] = df[col].fillna(0).astype("int64")
    for col in ("error", "errors"):
        df[col] = df[col].fillna("")
    return df


def render_csv(keys: list[str]) -> bytes:
    return frame(keys).to_csv(index=False, float_format="%.3f").encode()


def summary(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts().to_dict()
    parts = [f"{n} {s}" for s, n in sorted(counts.items())]
    return f"{len(df)} batches: " + (", ".join(parts) if parts else "none")


def metrics_path(work_dir: Path) -> Path:
    return work_dir / "metrics.csv"
