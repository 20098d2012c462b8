"""The work of each pipeline stage for one batch, as plain functions.

``tasks.py`` decides *when* these run (the DAG); this module decides *what*
they do. Each function reads the previous checkpoint, does its stage, and
writes its own checkpoint atomically. They can be called without Luigi, which
is how the tests and benchmarks drive single stages.

Checkpoints, all in the batch's private work folder::

    source.json        the input folder (written when stage 1 starts; discovered.json has them all)
    headers.json       stage 1: per-file header data, per-file errors, PHI for the leak check
    identifiers.json   stage 2: coded patient id, coded accession, date shift (or an error)
    study.tar.gz       stage 3: the de-identified study
    row.json           stage 3: the study's metadata row (done batches; written before result.json)
    result.json        stage 3: status, counts, sizes, timings, errors
    uploaded.json      upload: where the tarball and the row went
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import claims, cleanup, stops
from .batches import Batch, make_work_folder, secret_hash, with_row
from .deidentify import (
    Context,
    InputChanged,
    LeakCheck,
    Profile,
    Recipe,
    TarballBroken,
    pack_study,
    shift_date,
    uid_remapper,
)
from .errors import BatchError, describe, file_error, redact
from .headers import extract_headers, single_value
from .identifiers import Backend as IdentifiersBackend
from .identifiers import Identifiers, StudyRequest
from .inputs import input_signature
from .progress import RUN
from .records import HeadersRecord, IdentifiersRecord, MetadataRow, Placed, ResultRecord, Timing
from .storage import Store, metadata_row
from .workdir import (
    read_json,
    read_json_or_none,
    space_shortfall,
    sweep_temporaries,
    write_json,
)

if TYPE_CHECKING:
    from . import config
    from .workdir import Keyed

log = logging.getLogger("sendit_luigi")

DATE_FIELDS = ("study_date", "series_date", "content_date", "acquisition_date")

Progress = Callable[[int, int, int], None]  # (files done, files in all, errors so far)


@dataclass(frozen=True)
class Settings:
    """What the stages take from the configuration. ``tasks.py`` reads it once (``from_config``) and passes it."""

    input_roots: tuple[Path, ...]  # nothing outside them is read
    work_dir: Path  # its studies/ folder holds the claims that keep a study from being uploaded twice
    recipe: Recipe
    hasher: Keyed  # the work folder's keyed hash: UIDs and study claims
    uid_root: str
    study_id_from: str
    patient_id_from: str
    min_free_gb: float
    compress_level: int
    remove_after_upload: bool

    @classmethod
    def from_config(cls, sendit: config.sendit, deid: config.deid) -> Settings:
        return cls(
            input_roots=tuple(sendit.input_roots()),
            work_dir=sendit.work_path(),
            recipe=load_recipe(sendit, deid),
            hasher=secret_hash(sendit.secret_path()),
            uid_root=deid.uid_root,
            study_id_from=sendit.study_id_from,
            patient_id_from=sendit.patient_id_from,
            min_free_gb=sendit.min_free_gb,
            compress_level=sendit.compress_level,
            remove_after_upload=sendit.remove_after_upload,
        )


def _timing(start: float) -> Timing:
    end = time.time()
    return {"start": round(start, 3), "end": round(end, 3), "seconds": round(end - start, 3)}


# -- stage 1 -----------------------------------------------------------------


def extract(b: Batch, settings: Settings, progress: Progress | None = None) -> HeadersRecord:
    """Stage 1: read the batch folder's headers into ``headers.json``."""
    make_work_folder(b)  # made now rather than at discovery
    sweep_temporaries(b.dir)
    rules = settings.recipe
    headers = extract_headers(b.folder(), list(settings.input_roots), rules.profile, rules.burned_in, progress)
    write_json(b.headers_file, headers)
    stops.reach("headers written")
    good = sum("error" not in f for f in headers["files"])
    log.info("batch %s: headers read, %d of %d files readable", b.key, good, len(headers["files"]))
    return headers


# -- stage 2 -----------------------------------------------------------------


def study_request(b: Batch, headers: dict, settings: Settings) -> StudyRequest:
    """What to ask the identifiers backend for this batch; ``BatchError`` if it cannot be asked."""
    cfg = settings
    files = [f for f in headers["files"] if "error" not in f and "skipped" not in f]
    try:
        patient_id = single_value(files, "patient_id")
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    study = study_id(files, cfg.study_id_from)
    if not patient_id and cfg.patient_id_from == "patient_id_then_study":
        patient_id = "STUDY-" + study  # its own patient: linked to no other study
    if not patient_id:
        raise BatchError(
            "PatientID (0010,0020) is missing or empty in every file; a coded patient id needs it "
            "([sendit] patient_id_from = patient_id_then_study lets the study stand for its own patient)"
        )
    study_date = study_date_of(files)
    if not study_date:
        raise BatchError("StudyDate (0008,0020) is missing, and so are SeriesDate, ContentDate and AcquisitionDate")
    birth = sorted(f["birth_date"] for f in files if f.get("birth_date"))
    return StudyRequest(b.key, patient_id, study, birth[0] if birth else "", study_date)


def study_id(files: list[dict], source: str) -> str:
    """The value the coded study id is made from, as ``[sendit] study_id_from`` says; ``BatchError`` if none.

    A StudyInstanceUID becomes ``UID-1-2-840-...``: DASHER's item ids allow no dots,
    and the prefix keeps it apart from any accession number.
    """
    try:
        accession = single_value(files, "accession") if source != "study_uid" else ""
        if accession:
            return accession
        if source == "accession":
            raise BatchError(
                "AccessionNumber (0008,0050) is missing or empty in every file; a coded study id needs it "
                "([sendit] study_id_from = accession_then_study_uid would use the StudyInstanceUID)"
            )
        uid = single_value(files, "study_uid")
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    if not uid:
        raise BatchError(
            "AccessionNumber (0008,0050) and StudyInstanceUID (0020,000D) are both missing or empty in every "
            "file; a coded study id needs one of them"
            if source != "study_uid"
            else "StudyInstanceUID (0020,000D) is missing or empty in every file; a coded study id needs it"
        )
    return "UID-" + uid.replace(".", "-")


def study_date_of(files: list[dict]) -> str:
    """The study's date: the earliest StudyDate, else SeriesDate, ContentDate, AcquisitionDate."""
    for name in DATE_FIELDS:
        dates = sorted(f[name] for f in files if f.get(name))
        if dates:
            return dates[0]
    return ""


def assign(group: list[Batch], backend: IdentifiersBackend, settings: Settings) -> dict[str, IdentifiersRecord]:
    """Stage 2 for a group of batches: one backend call, one ``identifiers.json`` each (returned by key)."""
    start = time.time()
    requests: list[StudyRequest] = []
    records: dict[str, IdentifiersRecord] = {}
    phi_of: dict[str, list[str]] = {}
    for b in group:
        headers = read_json(b.headers_file)
        phi_of[b.key] = headers["phi"]
        if headers["status"] != "ok":
            records[b.key] = {"status": "skipped", "error": ""}
            continue
        try:
            requests.append(study_request(b, headers, settings))
        except BatchError as exc:
            records[b.key] = {"status": "error", "error": str(exc), "retryable": False}
    if requests:
        try:
            results = backend.assign(requests)
        except BatchError as exc:  # the whole call failed (service down ...)
            results = {r.key: exc for r in requests}
        for req in requests:
            result = results.get(req.key) or BatchError("the identifiers backend returned nothing for this batch")
            if isinstance(result, Identifiers):
                records[req.key] = {"status": "ok", **result.to_dict()}
            else:
                # a service's reply is not our text: every identifying value of the batch is taken out
                text = redact(str(result), values=[req.patient_id, req.accession, *phi_of.get(req.key, [])])
                records[req.key] = {"status": "error", "error": text, "retryable": result.retryable, "at": time.time()}
    # One call served the whole group: each batch's seconds are its share, so that the metrics' column
    # adds up to the time really spent (the group's own time is kept beside it).
    whole = _timing(start)
    stage: Timing = {**whole, "seconds": round(whole["seconds"] / len(group), 3), "group_seconds": whole["seconds"]}
    for b in group:
        records[b.key] = {**records[b.key], "stage": stage}
        write_json(b.identifiers_file, records[b.key])
        log.info("batch %s: identifiers %s", b.key, records[b.key]["status"])
    return records


# -- stage 3 -----------------------------------------------------------------


def load_recipe(sendit: config.sendit, deid: config.deid) -> Recipe:
    """The configured recipe: the profile's table with the options in force, and the recipe file."""
    return _recipe(
        sendit.recipe_path(),
        deid.table_path(),
        deid.options(),
        deid.descriptors(),
        deid.private_allow(),
        deid.filters(),
    )


@functools.lru_cache(maxsize=4)
def _recipe(
    path: Path,
    table: Path,
    options: frozenset[str],
    descriptors: frozenset[str],
    keep_private_creators: frozenset[str],
    filters: tuple[str, ...],
) -> Recipe:
    """A recipe and its profile, built once per process (the profile indexes the whole table)."""
    return Recipe(path, Profile(table, options, descriptors), keep_private_creators, filters)


def anonymize(b: Batch, settings: Settings, progress: Progress | None = None) -> ResultRecord:
    """Stage 3: de-identify the batch into ``study.tar.gz`` and write ``result.json``."""
    start = time.time()
    sweep_temporaries(b.dir)
    headers = read_json(b.headers_file)
    ids = read_json(b.identifiers_file)
    files = headers["files"]
    result: dict[str, Any] = {
        "key": b.key,
        "files": len(files),
        "bytes_in": headers["bytes_in"],
        "bytes_out": 0,
        "errors": [{"file": f["index"], "error": f["error"]} for f in files if "error" in f],
        "quarantine": [{"file": f["index"], "reason": f["quarantine"]} for f in files if "quarantine" in f],
        "skipped": [{"file": f["index"], "reason": f["skipped"]} for f in files if "skipped" in f],
        "pixels_cleaned": [],
        "recipe_hash": settings.recipe.hash,
        "stages": {"headers": headers["stage"], "identifiers": ids["stage"]},
    }
    if headers["status"] != "ok":
        result.update(status=headers["status"], error=headers["error"])
    elif ids["status"] != "ok":
        result.update(status="error", error=ids["error"], retryable=ids.get("retryable", False), at=time.time())
    elif short := space_shortfall(b.dir, headers["bytes_in"], "the work disk", settings.min_free_gb):
        # the tarball is at most about the input's size. The batch waits for the next run, while this
        # one goes on to upload (and, with [sendit] remove_after_upload, free) what is done.
        text = f"{short}; it waits: free some space (python -m sendit_luigi cleanup) and run again"
        result.update(status="waiting", error=text, retryable=True, at=time.time())
    else:
        try:
            result.update(_pack(b, headers, ids, settings, progress))
        except InputChanged:  # read again from stage 1 at the next run
            b.headers_file.unlink(missing_ok=True)
            b.identifiers_file.unlink(missing_ok=True)
            result.update(
                status="error",
                retryable=True,
                at=time.time(),
                error="an input file changed after its header was read; the batch is read again at the next run",
            )
        except (OSError, TarballBroken) as exc:
            text = (
                str(exc) if isinstance(exc, TarballBroken) else f"could not write the study tarball: {file_error(exc)}"
            )
            result.update(status="error", retryable=True, at=time.time(), error=f"{text}; tried again at the next run")
    result["files_error"] = len(result["errors"])
    result["stages"]["anonymize"] = _timing(start)
    result["run"] = RUN.name
    if result["status"] in ("error", "empty") and not result.get("retryable"):  # retried once the input changes
        result["input"] = input_signature(b.folder())
    if result["status"] != "done":
        b.tarball.unlink(missing_ok=True)
        b.row_file.unlink(missing_ok=True)
    else:  # its own file: result.json stays small, and status, metrics and reruns read only that
        write_json(b.row_file, result.pop("row"))
    write_json(b.result_file, result)
    log.info("batch %s: %s, %d files, %d errors", b.key, result["status"], result["files"], result["files_error"])
    if result["status"] == "waiting":
        log.warning("batch %s %s", b.key, result["error"])
    return cast(ResultRecord, result)  # built up above, one outcome at a time


def _pack(b: Batch, headers: dict, ids: dict, settings: Settings, progress: Progress | None) -> dict:
    hasher = settings.hasher
    jitter = int(ids["jitter_days"])
    ctx = Context(
        variables={"patient_id": ids["patient"], "accession": ids["accession"], "jitter": jitter},
        jitter_days=jitter,
        remap_uid=uid_remapper(hasher, settings.uid_root),
    )
    folder = b.folder()
    if not folder.is_dir():
        return {
            "status": "error",
            "retryable": True,
            "at": time.time(),
            "error": "the batch folder disappeared during the run; it is tried again when it is back",
        }
    good = [f for f in headers["files"] if "error" not in f and "quarantine" not in f and "skipped" not in f]
    if not good:
        return {"status": "error", "error": "every readable file is quarantined or skipped; nothing to pack"}
    leak = LeakCheck.for_study(headers["phi"], jitter)
    packed = pack_study(
        folder,
        list(settings.input_roots),
        good,
        settings.recipe,
        ctx,
        leak,
        b.tarball,
        b.dir / "scratch.dcm",
        settings.compress_level,
        progress,
    )
    errors = [{"file": f["index"], "error": f["error"]} for f in headers["files"] if "error" in f]
    errors += [{"file": r["file"], "error": r["error"]} for r in packed.files if "error" in r]
    cleaned = [
        {"file": r["file"], "reason": f["clean_pixels"]}
        for r, f in zip(packed.files, good, strict=True)
        if r.get("pixels_cleaned")
    ]
    errors.sort(key=lambda e: int(e["file"].split()[-1]))
    if not packed.packed:
        return {"status": "error", "error": "no file could be de-identified; see the file errors", "errors": errors}
    identities = [f"accession:{ids['accession']}", *sorted({f"uid:{f['study_uid']}" for f in good if f["study_uid"]})]
    if owner := claims.claim(settings.work_dir / "studies", hasher, b.key, identities):
        return {
            "status": "error",
            "errors": errors,
            "error": f"the same study (StudyInstanceUID or coded accession {ids['accession']}) is batch {owner}'s, "
            "from another folder: this copy is not uploaded",
        }
    dates = settings.recipe.profile.longitudinal()  # what the files' dates are: MODIFIED, UNMODIFIED or REMOVED
    original = study_date_of(good)
    study_date = {"MODIFIED": shift_date(original, jitter, "DA"), "UNMODIFIED": original}.get(dates) or "00000000"
    header = packed.header
    row: MetadataRow = {
        "CodedPatientID": ids["patient"],
        "CodedAccessionNumberID": ids["accession"],
        "StudyDate": study_date,
        "PatientSex": header.get("PatientSex", ""),
        "PatientAge": header.get("PatientAge", ""),
        "Modality": ",".join(sorted({f["modality"] for f in good if f.get("modality")})),
        "StudyDescription": header.get("StudyDescription", ""),
        "ContentType": "application/gzip",
        "ImageCount": packed.packed,
        "SeriesCount": len(packed.series),
        "SizeBytes": packed.bytes_out,
        "DicomHeader": header,
        "BatchKey": b.key,
        "IdentifiersBackend": ids["backend"],
    }
    return {
        "status": "done",
        "error": "",
        "errors": errors,
        "pixels_cleaned": cleaned,
        "bytes_out": packed.bytes_out,
        "tarball_name": f"{ids['patient']}_{study_date}_{ids['accession']}.tar.gz",
        "row": row,
    }


# -- upload --------------------------------------------------------------------


def upload(group: list[Batch], store: Store, threads: int = 1, remove_after_upload: bool = False) -> list[str]:
    """Send done batches to ``store``: each tarball, then all their rows in one insert.

    Writes ``uploaded.json`` for each batch whose tarball and row are both in
    place, and ``upload_error.json`` for each that failed. Returns the keys that failed.
    """
    placed: list[tuple[Batch, ResultRecord, Placed, Timing]] = []
    failed: list[str] = []

    def fail(b: Batch, exc: Exception) -> None:
        text = describe(exc)  # our words: no value to redact
        write_json(b.upload_error_file, {"error": text, "at": time.time()})
        log.error("batch %s: upload failed: %s", b.key, text)
        failed.append(b.key)

    def put(b: Batch) -> tuple[Batch, ResultRecord, Placed, Timing] | Exception | None:
        # this stage's own half-written markers from a killed run (stage 3's are swept by stage 3)
        sweep_temporaries(b.dir, of=(b.uploaded_file.name, b.upload_error_file.name))
        result: ResultRecord = read_json(b.result_file)
        if result["status"] != "done":
            return None
        with_row(b, result)
        start = time.time()
        try:
            return b, result, store.put_object(b.tarball, result, read_json_or_none(b.replaces_file)), _timing(start)
        except Exception as exc:  # noqa: BLE001 - recorded; the other batches go on
            return exc

    # Tarballs go up several at once ([upload] threads): each waits on the network, not the CPU.
    with ThreadPoolExecutor(max(1, min(threads, len(group)))) as pool:
        for b, outcome in zip(group, pool.map(put, group), strict=True):
            if isinstance(outcome, Exception):
                fail(b, outcome)
            elif outcome is not None:
                placed.append(outcome)
    if not placed:
        return failed
    start = time.time()
    try:
        stops.reach("objects placed")
        store.insert_rows([metadata_row(result, record) for _, result, record, _ in placed])
    except Exception as exc:  # noqa: BLE001 - recorded on every batch of this insert
        for b, *_ in placed:
            fail(b, exc)
        return failed
    insert = _timing(start)
    for b, _, record, sent in placed:
        # from its tarball's start to the rows' end; its seconds are its own plus its share of the insert
        stage = {
            "start": sent["start"],
            "end": insert["end"],
            "seconds": round(sent["seconds"] + insert["seconds"] / len(placed), 3),
        }
        write_json(b.uploaded_file, {**record, "stage": stage})
        stops.reach("upload marked")
        b.upload_error_file.unlink(missing_ok=True)
        b.replaces_file.unlink(missing_ok=True)
        if remove_after_upload:
            cleanup.free(b)
        log.info("batch %s: uploaded", b.key)
    return failed
