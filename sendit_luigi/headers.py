"""Stage 1: read every file of a batch and extract the header data the later stages need.

Headers are parsed with ``stop_before_pixels``; every file is still read in
full once, for its fingerprint (size, modification time, BLAKE3 hash), so that
stage 3 packs exactly the file whose header was read here. The result (the
*headers checkpoint*) holds, per file, the few values that decide the batch's
identity, and for the whole batch every value that the profile removes, which
the leak check later looks for in every output byte. It holds PHI and paths,
so it stays in the private work directory; everything that leaves it names a
file by its number in the batch (``file 3``), never by its path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from .deidentify.leakcheck import identifying_values
from .deidentify.profile import Profile
from .errors import FileProblem, file_error
from .inputs import inside, read_dicom, walk_files
from .records import HeadersRecord

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
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR: an index of the media, full of patient names


def file_label(index: int) -> str:
    """How a file is named outside the work directory: by its number in the batch."""
    return f"file {index}"


def extract_file(
    path: Path, roots: list[Path], profile: Profile, burned_in: Callable[[Dataset], tuple[str, bool]] | None = None
) -> tuple[dict, set[str]]:
    """Read one file's header; return its record and its identifying values."""
    ds, fingerprint = read_dicom(path, roots)
    record: dict = {"fingerprint": fingerprint.as_dict()}
    meta = getattr(ds, "file_meta", None)
    if path.name.upper() == "DICOMDIR" or (meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY):
        record["skipped"] = "a DICOMDIR (media index): never packed"
        return record, identifying_values(ds, profile)
    for name, keyword in FILE_FIELDS.items():
        try:
            value = ds.get(keyword)
        except Exception as exc:  # noqa: BLE001 - a malformed element: say which one, never its value
            raise FileProblem(file_error(exc, element=tag_for_keyword(keyword))) from None
        record[name] = "" if value is None else str(value).strip()
    for field, words in (("sop_uid", "SOPInstanceUID (0008,0018)"), ("series_uid", "SeriesInstanceUID (0020,000E)")):
        if not record[field]:
            raise FileProblem(f"{words} is missing: cannot name the output file")
    if not str(ds.get("SOPClassUID", "")).strip():
        raise FileProblem("SOPClassUID (0008,0016) is missing: not a DICOM instance")
    values = identifying_values(ds, profile)  # walks every depth: a file nested too deep fails here
    if burned_in is not None:
        reason, regions = burned_in(ds)
        if reason and regions and "clean_pixel_data" in profile.options:
            record["clean_pixels"] = reason  # stage 3 blacks the regions out
        elif reason:
            record["quarantine"] = reason
    return record, values


def extract_headers(
    folder: Path,
    roots: list[Path],
    profile: Profile,
    burned_in: Callable[[Dataset], tuple[str, bool]] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> HeadersRecord:
    """Stage 1 for one batch folder: the headers checkpoint.

    Never raises for bad files: each one gets an ``error`` in its record, in
    our words. A batch that is empty or has no readable DICOM file gets a
    batch ``error`` (status ``empty`` or ``error``). ``burned_in`` says why a
    file's pixels may show PHI, and whether the regions are known; such a file
    is quarantined (never packed), or, with the profile's Clean Pixel Data
    option and known regions, marked for cleaning.
    ``progress`` is told (files done, files in all, errors so far).
    """
    start = time.time()
    files: list[dict] = []
    phi: set[str] = set()
    batch_error = ""
    paths: list[Path] = []
    if roots and not inside(folder, roots):
        batch_error = "the batch folder is a link that leads outside the input folders; it is not read"
    elif not folder.is_dir():
        batch_error = "the batch folder no longer exists (moved or deleted after it was found)"
    else:
        try:
            paths = list(walk_files(folder))
        except OSError as exc:
            batch_error = f"cannot list the batch folder: {file_error(exc)}"
    for index, path in enumerate(paths, start=1):
        entry: dict = {"index": file_label(index), "path": path.relative_to(folder).as_posix()}
        try:
            entry["size"] = os.lstat(path).st_size
            record, values = extract_file(path, roots, profile, burned_in)
            entry.update(record)
            entry["size"] = record["fingerprint"]["size"]
            phi |= values
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is this file's error
            entry["error"] = file_error(exc)
        files.append(entry)
        if progress is not None:
            progress(len(files), len(paths), sum("error" in f for f in files))
    phi.add(folder.name)

    good = [f for f in files if "error" not in f and "skipped" not in f]
    status = "ok"
    if batch_error:
        status = "error"
    elif not files:
        status, batch_error = "empty", "the batch folder has no files"
    elif not good:
        status, batch_error = "error", f"none of the {len(files)} files is a readable DICOM file"
    return {
        "status": status,
        "error": batch_error,
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
    values = {f[field] for f in files if "error" not in f and "skipped" not in f and f.get(field)}
    if len(values) > 1:
        raise ValueError(f"the batch holds {len(values)} different {field} values; put each study in its own folder")
    return values.pop() if values else ""
