"""Where finished studies go: one module per backend, one interface.

A backend's ``Store()`` has two calls, both idempotent (calling them again for
the same study changes nothing and duplicates nothing):

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

from .. import config

# Columns of the metadata table, in order: sendit's BigQuery `dicom` columns
# plus counts, size and upload time. Values are all coded or non-identifying.
COLUMNS = (
    "storage_download",
    "storage_metadataLink",
    "CodedAccessionNumberID",
    "CodedPatientID",
    "StudyDate",
    "ContentType",
    "PatientSex",
    "PatientAge",
    "Modality",
    "StudyDescription",
    "DicomHeader",
    "ImageCount",
    "SeriesCount",
    "SizeBytes",
    "BatchKey",
    "IdentifiersBackend",
    "UploadTime",
)


def md5_digest(path: Path) -> bytes:
    """The MD5 of a file, read in 1 MiB chunks (the check both backends make before marking an upload)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def object_name(result: dict) -> str:
    """sendit's naming: Collection/<study>/Entity/<coded patient>/<patient>_<shifted date>_<accession>.tar.gz"""
    collection = config.storage.get().collection
    return f"Collection/{collection}/Entity/{result['row']['CodedPatientID']}/{result['tarball_name']}"


def metadata_row(result: dict, placed: dict) -> dict:
    """The study's metadata row as both tables take it: the row from ``row.json``, the addresses of
    its uploaded tarball, and the shared header as a JSON string (``UploadTime`` is the backend's)."""
    return {
        **result["row"],
        "storage_download": placed["download"],
        "storage_metadataLink": placed["link"],
        "DicomHeader": json.dumps(result["row"].get("DicomHeader", {}), sort_keys=True),
    }


def get_store():
    """The configured backend module's ``Store()``: ``storage.<name>``."""
    name = config.storage.get().backend
    return importlib.import_module(f"{__name__}.{name}").Store()


def check_settings() -> None:
    """Raise ``ValueError`` naming a missing setting of the configured backend (before any work)."""
    module = importlib.import_module(f"{__name__}.{config.storage.get().backend}")
    if hasattr(module, "check_settings"):
        module.check_settings(config.storage.get())
