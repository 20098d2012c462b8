"""The embedded storage backend: a local folder laid out like the bucket, and a SQLite table.

``[storage] backend = local`` writes ``<local_root>/Collection/<study>/Entity/...``
exactly as the GCS backend names objects, and the metadata rows into the
``dicom`` table of ``<local_root>/metadata.sqlite``, with the same columns as
the BigQuery table.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path

from .. import config
from ..errors import BatchError
from ..records import Placed, ResultRecord
from ..workdir import space_shortfall
from . import COLUMNS, md5_digest, object_name


def md5_of(path: Path) -> str:
    return md5_digest(path).hex()


def check_settings(cfg: config.storage) -> None:
    """Refuse an unusable ``local_mode`` before any work."""
    cfg.local_modes()


class Store:
    """``[storage] backend = local``."""

    def __init__(self, cfg: config.storage, min_free_gb: float = 0.0) -> None:
        self.collection = cfg.collection
        self.root = cfg.local_path()
        self.table = self.root / "metadata.sqlite"
        self.dir_mode, self.file_mode = cfg.local_modes()
        self.min_free_gb = min_free_gb  # [sendit] min_free_gb: this bucket may share the work disk

    def _folder(self, path: Path) -> None:
        """Create ``path`` and its parents up to the bucket's root with the bucket's folder mode."""
        missing = [p for p in (path, *path.parents) if not p.exists() and (p == self.root or self.root in p.parents)]
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, self.dir_mode)  # mkdir's mode is cut by the umask; the setting is not

    def put_object(self, tarball: Path, result: ResultRecord, replaces: dict | None = None) -> Placed:
        name = object_name(result, self.collection)
        target = self.root / name
        old = self.root / replaces["object"] if replaces else None
        same_name = replaces is not None and replaces["object"] == name
        if old is not None and replaces and same_name and old.exists() and md5_of(old) == replaces["md5"]:
            old.unlink()  # the reprocessed study's earlier tarball: the new one takes its place
        md5 = self.copy_object(tarball, target)
        if old is not None and replaces and not same_name and old.exists() and md5_of(old) == replaces["md5"]:
            old.unlink()
        return {
            "object": name,
            "md5": md5,
            "bytes": tarball.stat().st_size,
            "backend": "local",
            "download": target.as_uri(),
            "link": f"{self.table.as_uri()}#dicom/{result['row']['CodedAccessionNumberID']}",
        }

    def copy_object(self, source: Path, target: Path) -> str:
        """Copy ``source`` to ``target`` atomically; never replace different bytes."""
        md5 = md5_of(source)
        if target.exists():
            if md5_of(target) == md5:
                return md5
            raise BatchError(f"{target.name} already exists in storage with different bytes; not overwritten")
        self._folder(target.parent)
        short = space_shortfall(target.parent, source.stat().st_size, "the bucket disk", self.min_free_gb)
        if short:
            raise BatchError(f"the study tarball {short}; not copied")
        # One name per object: only one worker uploads a batch at a time, and a copy
        # left by a killed run is simply overwritten by the next attempt.
        tmp = target.with_name(f".{target.name}.part")
        try:
            shutil.copyfile(source, tmp)  # a full disk (ENOSPC) leaves no part behind: see finally
            os.chmod(tmp, self.file_mode)
            os.link(tmp, target)  # fails if another writer got there first
        except FileExistsError:
            if md5_of(target) != md5:
                raise BatchError(
                    f"{target.name} already exists in storage with different bytes; not overwritten"
                ) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise BatchError("no space left on the bucket disk ([storage] local_root); not copied") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return md5

    def insert_rows(self, rows: list[dict]) -> None:
        """Insert rows keyed by the coded accession, in one transaction; a row already there is kept."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        values = [[dict(row, UploadTime=now).get(c, "") for c in COLUMNS] for row in rows]
        self._folder(self.root)
        fresh = not self.table.exists()
        db = sqlite3.connect(self.table, timeout=120)
        if fresh:
            os.chmod(self.table, self.file_mode)
        try:
            with db:  # one transaction: all of these rows or none
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS dicom ({', '.join(COLUMNS)}, PRIMARY KEY (CodedAccessionNumberID))"
                )
                db.executemany(
                    f"INSERT OR IGNORE INTO dicom ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    values,
                )
        finally:
            db.close()


def rows(root: Path) -> list[dict]:
    """All rows of a local metadata table (for tests and the status command)."""
    table = root / "metadata.sqlite"
    if not table.exists():
        return []
    db = sqlite3.connect(table)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM dicom ORDER BY CodedAccessionNumberID")]
    finally:
        db.close()
