"""Where finished studies go: one module per backend, one interface.

A backend's ``Store().put_study(tarball, result)`` places the study tarball
under sendit's object naming and inserts its metadata row, idempotently: calling
it again for the same study changes nothing and duplicates nothing. It returns
a small record of where things went, kept in the batch's ``uploaded.json``.
"""

from __future__ import annotations

import hashlib
import importlib
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


def get_store():
    """The configured backend module's ``Store()``: ``storage.<name>``."""
    name = config.storage.get().backend
    return importlib.import_module(f"{__name__}.{name}").Store()


def check_settings() -> None:
    """Raise ``ValueError`` naming a missing setting of the configured backend (before any work)."""
    module = importlib.import_module(f"{__name__}.{config.storage.get().backend}")
    if hasattr(module, "check_settings"):
        module.check_settings(config.storage.get())
