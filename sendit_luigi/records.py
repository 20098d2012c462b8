"""The checkpoint records each stage writes into a batch's work folder, and the one metadata-row schema.

The records are JSON files; their shapes are declared here once, as ``TypedDict``s,
so that mypy checks every read and write of a field against them::

    headers.json       HeadersRecord      stage 1
    identifiers.json   IdentifiersRecord  stage 2
    row.json           MetadataRow        stage 3 (done batches): the study's row, before upload
    result.json        ResultRecord       stage 3
    uploaded.json      UploadedRecord     the upload

``METADATA_SCHEMA`` is the metadata table's columns, in order, with their BigQuery
types: the local table, the BigQuery table and the row stage 3 builds all follow it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Timing(TypedDict):
    """When a stage ran (Unix seconds) and for how long."""

    start: float
    end: float
    seconds: float
    group_seconds: NotRequired[float]  # stage 2: the whole group's call, of which ``seconds`` is this batch's share


class HeadersRecord(TypedDict):
    """Stage 1: one entry per file (``index``, ``path``, header fields or an ``error``), and the batch's PHI."""

    status: str  # ok | empty | error
    error: str
    files: list[dict[str, Any]]
    phi: list[str]  # the identifying values the leak check looks for (PHI: never log them)
    bytes_in: int
    stage: Timing


class IdentifiersRecord(TypedDict):
    """Stage 2: the coded ids and date shift (``status`` ok), or why there are none."""

    status: str  # ok | skipped | error
    error: NotRequired[str]
    retryable: NotRequired[bool]
    at: NotRequired[float]  # when a retryable error was recorded
    patient: NotRequired[str]
    accession: NotRequired[str]
    jitter_days: NotRequired[int]
    backend: NotRequired[str]
    stage: NotRequired[Timing]


class FileNote(TypedDict):
    """A file of the batch that was not packed as it was, and why (``file`` is its label, never its name)."""

    file: str
    error: NotRequired[str]
    reason: NotRequired[str]


def finished_at(result: ResultRecord | None) -> float:
    """When stage 3 ended for this result (0 if it has not)."""
    stage = result["stages"].get("anonymize") if result else None
    return stage["end"] if stage else 0.0


class ResultRecord(TypedDict):
    """Stage 3: the batch's outcome."""

    key: str
    status: str  # done | empty | error | waiting
    error: str
    files: int
    files_error: int
    bytes_in: int
    bytes_out: int
    errors: list[FileNote]
    quarantine: list[FileNote]
    skipped: list[FileNote]
    pixels_cleaned: list[FileNote]
    recipe_hash: str
    stages: dict[str, Timing]
    run: str
    tarball_name: NotRequired[str]  # done batches
    retryable: NotRequired[bool]
    at: NotRequired[float]  # when a retryable error was recorded
    input: NotRequired[str]  # the input's signature, for a batch in error or empty (retried when it changes)
    cleaned: NotRequired[bool]  # its work copies were removed after the upload
    row: NotRequired[MetadataRow]  # in result.json before row.json existed; the upload reads it from either


class Placed(TypedDict):
    """Where a store put a tarball: its object name and MD5, and the addresses its row carries."""

    object: str
    md5: str
    download: str
    link: str
    bytes: int
    backend: str
    crc32c: NotRequired[str]  # gcs
    generation: NotRequired[int]  # gcs


class UploadedRecord(Placed):
    """Where the tarball and the row went, and when."""

    stage: Timing


# The metadata table: sendit's BigQuery `dicom` columns plus counts, size and upload time, in
# order, with their BigQuery types. Every value is coded or non-identifying.
METADATA_SCHEMA: tuple[tuple[str, str], ...] = (
    ("storage_download", "STRING"),
    ("storage_metadataLink", "STRING"),
    ("CodedAccessionNumberID", "STRING"),
    ("CodedPatientID", "STRING"),
    ("StudyDate", "STRING"),
    ("ContentType", "STRING"),
    ("PatientSex", "STRING"),
    ("PatientAge", "STRING"),
    ("Modality", "STRING"),
    ("StudyDescription", "STRING"),
    ("DicomHeader", "JSON"),
    ("ImageCount", "INTEGER"),
    ("SeriesCount", "INTEGER"),
    ("SizeBytes", "INTEGER"),
    ("BatchKey", "STRING"),
    ("IdentifiersBackend", "STRING"),
    ("UploadTime", "TIMESTAMP"),
)
COLUMNS = tuple(name for name, _ in METADATA_SCHEMA)


class MetadataRow(TypedDict):
    """The row stage 3 builds for a done study (``row.json``); the upload adds the object's addresses."""

    CodedPatientID: str
    CodedAccessionNumberID: str
    StudyDate: str
    PatientSex: str
    PatientAge: str
    Modality: str
    StudyDescription: str
    ContentType: str
    ImageCount: int
    SeriesCount: int
    SizeBytes: int
    DicomHeader: dict[str, str]
    BatchKey: str
    IdentifiersBackend: str
