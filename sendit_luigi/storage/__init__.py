"""Where finished studies go: one module per backend, one interface.

Each backend module has a ``Store`` class (the ``Store`` protocol below); ``[storage]
backend`` names the module, and ``config.backends`` lists them from this folder. A
store has two calls, both idempotent (calling them again for the same study changes
nothing and duplicates nothing):

* ``put_object(tarball, result, replaces=None)`` places one study tarball under
  sendit's object naming and returns a small record of where it went (kept in
  the batch's ``uploaded.json``), with the ``download`` and ``link`` addresses
  for its row. Different bytes under the same name are refused, except the very
  object named by ``replaces`` (its name and MD5, from ``reprocess``), which is
  replaced, or deleted when the new tarball has another name;
* ``insert_rows(rows)`` inserts the metadata rows of several studies in one
  request, skipping any whose coded accession is in the table already.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Protocol

from .. import config
from ..records import COLUMNS, METADATA_SCHEMA, Placed, ResultRecord

__all__ = ["COLUMNS", "METADATA_SCHEMA", "Store", "get_store", "metadata_row", "object_name"]


def md5_digest(path: Path) -> bytes:
    """The MD5 of a file, read in 1 MiB chunks (the check both backends make before marking an upload)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def object_name(result: ResultRecord, collection: str) -> str:
    """sendit's naming: Collection/<study>/Entity/<coded patient>/<patient>_<shifted date>_<accession>.tar.gz"""
    return f"Collection/{collection}/Entity/{result['row']['CodedPatientID']}/{result['tarball_name']}"


def metadata_row(result: ResultRecord, placed: Placed) -> dict:
    """The study's metadata row as both tables take it: the row from ``row.json``, the addresses of
    its uploaded tarball, and the shared header as a JSON string (``UploadTime`` is the backend's)."""
    return {
        **result["row"],
        "storage_download": placed["download"],
        "storage_metadataLink": placed["link"],
        "DicomHeader": json.dumps(result["row"].get("DicomHeader", {}), sort_keys=True),
    }


class Store(Protocol):
    """What a storage backend module's ``Store()`` is (see the module's docstring)."""

    def put_object(self, tarball: Path, result: ResultRecord, replaces: dict | None = None) -> Placed:
        """Place one study tarball; where it went (``object``, ``md5``, ``download``, ``link``)."""
        ...

    def insert_rows(self, rows: list[dict]) -> None:
        """Insert the rows whose coded accession is not in the table yet."""
        ...


def get_store() -> Store:
    """The configured backend module's ``Store``: ``storage.<name>``, given ``[storage]`` and the disk floor."""
    name = config.storage.get().backend
    module = importlib.import_module(f"{__name__}.{name}")
    store: Store = module.Store(config.storage.get(), config.sendit.get().min_free_gb)
    return store


def check_settings() -> None:
    """Raise ``ValueError`` naming a missing setting of the configured backend (before any work)."""
    module = importlib.import_module(f"{__name__}.{config.storage.get().backend}")
    if hasattr(module, "check_settings"):
        module.check_settings(config.storage.get())
