"""The re-identification key, for IRB-approved re-identification only.

``python -m sendit_luigi audit export FILE`` writes (mode 0600) every batch key
with its folder and its original and coded ids, and the local vault's lookup
tables; ``audit read FILE`` shows it again. The file is PHI: it is never
uploaded, never part of the metrics, and should be kept as the IRB says.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .batches import batch, known_keys
from .headers import single_value
from .workdir import read_json_or_none


def collect(vault_path: Path) -> dict:
    rows = []
    for key in known_keys():
        b = batch(key)
        headers = read_json_or_none(b.headers_file) or {}
        ids = read_json_or_none(b.identifiers_file) or {}
        good = [f for f in headers.get("files", []) if "error" not in f]
        try:
            patient, accession = single_value(good, "patient_id"), single_value(good, "accession")
        except ValueError:
            patient = accession = "(several in this batch)"
        rows.append(
            {
                "batch_key": key,
                "folder": str(b.folder()),
                "patient_id": patient,
                "accession": accession,
                "coded_patient_id": ids.get("patient", ""),
                "coded_accession": ids.get("accession", ""),
                "jitter_days": ids.get("jitter_days", ""),
                "backend": ids.get("backend", ""),
            }
        )
    vault = {}
    if vault_path.exists():
        db = sqlite3.connect(f"file:{vault_path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            vault = {
                table: [dict(r) for r in db.execute(f"SELECT * FROM {table}")] for table in ("patients", "studies")
            }
        finally:
            db.close()
    return {
        "warning": "PHI: re-identification key. Keep private; never share or upload.",
        "batches": rows,
        "vault": vault,
    }


def export(target: Path, vault_path: Path) -> dict:
    data = collect(vault_path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.chmod(target, 0o600)
    return data


def read(source: Path) -> dict:
    return json.loads(source.read_text())
