"""Stage 1: read every file of a batch and extract the header data the later stages need.

Headers are read with ``stop_before_pixels``: the pixels are not needed until
the study is written. The result (the *headers checkpoint*) holds, per file,
the few values that decide the batch's identity, and for the whole batch the
set of identifying values that the leak check later looks for in every output
byte. It holds PHI, so it stays in the private work directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import describe, redact

# Top-level values kept per file. PatientID and AccessionNumber decide which
# patient and study a batch is; the dates drive the date shift and DASHER's
# timestamps; the rest is for the metadata row and sanity checks.
FILE_FIELDS = {
    "patient_id": "PatientID",
    "accession": "AccessionNumber",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_uid": "SOPInstanceUID",
    "study_date": "StudyDate",
    "series_date": "SeriesDate",
    "content_date": "ContentDate",
    "acquisition_date": "AcquisitionDate",
    "birth_date": "PatientBirthDate",
    "modality": "Modality",
}

STANDARD_UID_ROOT = "1.2.840.10008."

# Text elements whose values identify someone, besides every PN (person name),
# DA/DT (date) and non-standard UI (UID) element. Matching is on the keyword.
IDENTIFYING_KEYWORD_PARTS = ("Address", "Telephone", "Institution", "Accession", "StationName", "Email")
TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE"}

# UIDs that name a kind of thing (a SOP class, a syntax, a code scheme), not a person's study.
NON_INSTANCE_UIDS = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID", "ClassUIDInFile")

MIN_PATTERN = 3  # shorter values ("M", "1") are not identifying on their own


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, nested folders included, in a stable order.

    Symbolic links to files are read; links to folders are not followed.
    """

    def fail(exc: OSError) -> None:
        raise exc

    for root, dirs, files in os.walk(folder, onerror=fail):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def read_dicom(path: Path, stop_before_pixels: bool = True, defer_size: str | None = None) -> Dataset:
    """Read a DICOM file, also when it lacks the 128-byte preamble and 'DICM' marker.

    Raises ``ValueError`` with a plain-words reason for files that are not DICOM.
    """
    size = path.stat().st_size
    if size == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except InvalidDicomError:
        pass
    # Old or raw files have no preamble; force=True reads anything, so accept the
    # result only if it looks like a DICOM instance.
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer_size, force=True)
        if "SOPClassUID" in ds and "SOPInstanceUID" in ds and str(ds.SOPInstanceUID).strip():
            return ds
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM" here
        pass
    raise ValueError("not a DICOM file (no DICM marker and no readable DICOM header)")


def element_vr(raw) -> str:
    """An element's VR without decoding its value (implicit-VR files: the dictionary's)."""
    if raw.VR:
        return raw.VR
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        return "UN"


def _is_identifying(keyword: str, vr: str) -> bool:
    if vr in ("PN", "DA", "DT"):
        return True
    if vr == "UI":
        return not keyword.endswith(NON_INSTANCE_UIDS)
    return vr in TEXT_VRS and (
        keyword.endswith(("ID", "IDs")) or any(p in keyword for p in IDENTIFYING_KEYWORD_PARTS)
    )


def identifying_values(ds: Dataset) -> set[str]:
    """The values in ``ds`` that identify a person or a study, for the leak check.

    Only the elements that can hold such values are looked at (names, dates,
    UIDs, ids, addresses, at any depth, and the file meta), and their raw bytes
    are taken as they are in the file (as latin-1 text, which maps bytes 1:1),
    since those are the bytes a leak would copy. Private elements are skipped:
    they are removed.
    """
    found: set[str] = set()
    stack = [ds]
    if getattr(ds, "file_meta", None) is not None:
        stack.append(ds.file_meta)
    while stack:
        d = stack.pop()
        # Dataset._dict holds the raw elements; going through it skips pydicom's
        # per-element decoding, which is most of the cost here.
        for tag, raw in list(d._dict.items()):
            if tag.is_private:
                continue
            vr = element_vr(raw)
            if vr == "SQ":
                stack.extend(d[tag].value)
                continue
            if not _is_identifying(keyword_for_tag(tag), vr):
                continue
            for text in _texts(raw):
                found.add(text)
                if vr == "PN":
                    found.update(p.strip() for p in text.replace("=", "^").split("^") if p.strip())
                elif vr == "DT":
                    found.add(text[:8])
    return {v for v in found if len(v.strip()) >= MIN_PATTERN}


def _texts(elem) -> list[str]:
    """An element's values as text: raw bytes as latin-1, decoded values as str."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes):
        parts = value.decode("latin-1").split("\\")
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    return [p.strip(" \x00") for p in parts if p.strip(" \x00")]


def extract_file(path: Path, quarantine: Callable[[Dataset], str] | None = None) -> tuple[dict, set[str]]:
    """Read one file's header; return its record and its identifying values."""
    ds = read_dicom(path)
    record = {}
    for name, keyword in FILE_FIELDS.items():
        value = ds.get(keyword)
        record[name] = "" if value is None else str(value).strip()
    if not record["sop_uid"]:
        raise ValueError("SOPInstanceUID (0008,0018) is missing: cannot name the output file")
    if quarantine is not None:
        reason = quarantine(ds)
        if reason:
            record["quarantine"] = reason
    return record, identifying_values(ds)


def extract_headers(
    folder: Path,
    quarantine: Callable[[Dataset], str] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict:
    """Stage 1 for one batch folder: the headers checkpoint as a dict.

    Never raises for bad files: each one gets an ``error`` in its record. A
    batch that is empty or has no readable DICOM file gets a batch ``error``
    (status ``empty`` or ``error``). ``quarantine`` says why a file's pixels
    may show PHI; such a file is marked and will not be packed. ``progress``
    is told (files done, files in all, errors so far) as files are read.
    """
    start = time.time()
    files: list[dict] = []
    phi: set[str] = set()
    folder_text = str(folder)
    batch_error = ""
    paths: list[Path] = []
    if not folder.is_dir():
        batch_error = "the batch folder no longer exists (moved or deleted after it was found)"
    else:
        try:
            paths = list(walk_files(folder))
        except OSError as exc:
            batch_error = f"cannot list the batch folder: {describe(exc)}"
    for path in paths:
        rel = path.relative_to(folder).as_posix()
        entry: dict = {"path": rel}
        try:
            entry["size"] = path.stat().st_size
            record, values = extract_file(path, quarantine)
            entry.update(record)
            phi |= values
        except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
            entry["error"] = describe(exc)
        files.append(entry)
        if progress is not None:
            progress(len(files), len(paths), sum("error" in f for f in files))
    phi.add(folder.name)

    for entry in files:
        if "error" in entry:
            entry["error"] = redact(entry["error"], folder_text, phi)

    good = [f for f in files if "error" not in f]
    status = "ok"
    if batch_error:
        status = "error"
    elif not files:
        status, batch_error = "empty", "the batch folder has no files"
    elif not good:
        status, batch_error = "error", f"none of the {len(files)} files is a readable DICOM file"
    return {
        "status": status,
        "error": redact(batch_error, folder_text, phi),
        "files": files,
        "phi": sorted(phi),
        "bytes_in": sum(f.get("size", 0) for f in files),
        "stage": {"start": start, "end": time.time(), "seconds": round(time.time() - start, 3)},
    }


def single_value(files: list[dict], field: str) -> str:
    """The one non-empty value of ``field`` across the batch's good files, or ''.

    Raises ``ValueError`` when files disagree (two patients or two studies in
    one batch folder), naming the field, never the values.
    """
    values = {f[field] for f in files if "error" not in f and f.get(field)}
    if len(values) > 1:
        raise ValueError(f"the batch holds {len(values)} different {field} values; put each study in its own folder")
    return values.pop() if values else ""
