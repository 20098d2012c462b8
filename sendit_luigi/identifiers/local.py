"""The embedded identifiers backend: a local pseudonym vault.

Coded ids are keyed hashes (HMAC-SHA256 with the project secret) of the
original values, so they are the same on every rerun and in every batch. A
SQLite lookup table records each assignment; once a patient has a row, that row
wins, so ids stay stable even if the secret is ever replaced. The table holds
original ids: it is the re-identification key and lives in the private work
directory (mode 0600).
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from pathlib import Path

from .. import config
from ..errors import BatchError
from ..workdir import Keyed, private_dir
from . import Identifiers, StudyRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    original_id TEXT PRIMARY KEY,
    coded_id    TEXT NOT NULL UNIQUE,
    jitter_days INTEGER NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    original_accession TEXT PRIMARY KEY,
    coded_accession    TEXT NOT NULL UNIQUE,
    original_patient   TEXT NOT NULL,
    batch_key          TEXT NOT NULL,
    created            REAL NOT NULL
);
"""


def jitter_from(number: int, max_days: int) -> int:
    """A shift in [-max_days, max_days], never 0 (a zero shift would keep real dates)."""
    max_days = max(max_days, 1)
    shift = number % (2 * max_days) - max_days  # [-max, max-1]
    return shift + 1 if shift >= 0 else shift


class Vault:
    """The lookup table. Safe to use from several processes at once (SQLite locking)."""

    def __init__(self, path: Path, keyed: Keyed, max_jitter_days: int):
        private_dir(path.parent)
        self.path = path
        self.keyed = keyed
        self.max_jitter_days = max_jitter_days
        # Switching a new database to WAL needs it to itself: workers that open a new vault at
        # once take turns here (an flock on a file beside it), instead of failing with "locked".
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fresh = not path.exists()
            self.db = sqlite3.connect(path, timeout=120, isolation_level=None)
            if fresh:
                path.chmod(0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def patient(self, original_id: str) -> tuple[str, int]:
        coded = self.keyed.code("patient", original_id, "P")
        jitter = jitter_from(self.keyed.number("jitter", original_id), self.max_jitter_days)
        self.db.execute("INSERT OR IGNORE INTO patients VALUES (?, ?, ?, ?)", (original_id, coded, jitter, time.time()))
        row = self.db.execute(
            "SELECT coded_id, jitter_days FROM patients WHERE original_id = ?", (original_id,)
        ).fetchone()
        return row[0], row[1]

    def study(self, original_accession: str, original_patient: str, batch_key: str) -> str:
        coded = self.keyed.code("accession", original_accession, "A")
        self.db.execute(
            "INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?, ?)",
            (original_accession, coded, original_patient, batch_key, time.time()),
        )
        row = self.db.execute(
            "SELECT coded_accession, original_patient FROM studies WHERE original_accession = ?",
            (original_accession,),
        ).fetchone()
        if row[1] != original_patient:
            raise BatchError(
                "this accession number was already seen for a different patient; check the study's PatientID"
            )
        return row[0]


SETTINGS = config.identifiers  # the section this backend reads: ``vault``, ``max_jitter_days``


class Backend:
    """``[identifiers] backend = local``: the vault's coded ids, keyed by the work folder's secret."""

    name = "local"

    def __init__(self, settings: config.identifiers, hasher: Keyed) -> None:
        self.settings = settings
        self.hasher = hasher

    def assign(self, requests: list[StudyRequest]) -> dict[str, Identifiers | BatchError]:
        vault = Vault(self.settings.vault_path(), self.hasher, self.settings.max_jitter_days)
        results: dict[str, Identifiers | BatchError] = {}
        try:
            for req in requests:
                try:
                    coded_patient, jitter = vault.patient(req.patient_id)
                    coded_accession = vault.study(req.accession, req.patient_id, req.key)
                    results[req.key] = Identifiers(coded_patient, coded_accession, jitter, self.name)
                except BatchError as exc:
                    results[req.key] = exc
        finally:
            vault.close()
        return results
