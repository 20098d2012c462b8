"""Scenario: one ProcessAll run over a small archive with everything an archive has.

Two studies of one patient, a third patient's study with a corrupt, a truncated,
a zero-byte and a text file in it, an empty folder, and two folders still being
copied. One run of the real ``luigi`` command; each test checks one promise.
"""

from __future__ import annotations

import datetime as dt
import json

import pydicom
import pytest
from conftest import Pipeline, datasets, every_output_byte, file_label, make_study, members, tree_digest

SHARED_PATIENT = [make_study(1), make_study(2, patient=1)]
OTHER = make_study(3)
STUDIES = [*SHARED_PATIENT, OTHER]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    pipe = Pipeline(tmp_path_factory.mktemp("archive"))
    for study in STUDIES:
        pipe.add(study, files=4)
    bad = pipe.input / OTHER.folder
    good_bytes = next(bad.glob("IM*")).read_bytes()
    (bad / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00\x05\x00CS\xff\xff garbage" * 20)
    (bad / "truncated").write_bytes(good_bytes[:300])
    (bad / "zero").write_bytes(b"")
    (bad / "notes.txt").write_text("scanned at the front desk\n")
    (pipe.input / "ACCN49999").mkdir()  # empty batch
    for copying in ("ACCN47777.tmp", "ACCN48888part"):
        pipe.add(make_study(7, folder=copying), files=1)
    before = tree_digest(pipe.input)
    run = pipe.run()
    return pipe, run, before


def test_the_run_succeeds_and_names_every_task_by_key_only(archive):
    pipe, run, _ = archive
    assert run.code == 0, run.output
    for study in STUDIES + [make_study(7)]:
        for value in study.phi():
            assert value not in run.output


def test_each_non_empty_batch_gives_one_tarball_named_like_sendit(archive):
    pipe, _, _ = archive
    tarballs = pipe.tarballs()
    assert len(tarballs) == 3
    for tarball in tarballs:
        parts = tarball.relative_to(pipe.bucket).parts
        assert parts[:3] == ("Collection", "TESTIRB", "Entity")
        patient = parts[3]
        name_patient, shifted_date, accession = tarball.name[: -len(".tar.gz")].split("_")
        assert name_patient == patient
        assert len(shifted_date) == 8 and shifted_date.isdigit()
        ds = next(iter(datasets(tarball).values()))
        assert ds.PatientID == patient
        assert ds.AccessionNumber == accession
        assert ds.StudyDate == shifted_date


def test_output_files_are_valid_dicom_with_coded_identity(archive):
    pipe, _, _ = archive
    for tarball in pipe.tarballs():
        for name, ds in datasets(tarball).items():
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
            assert ds.SOPClassUID.startswith("1.2.840.10008.")
            assert ds.PatientIdentityRemoved == "YES"
            assert "DeidentificationMethod" in ds
            assert name == f"{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            assert not any(elem.tag.is_private for elem in ds.iterall())
            assert not ds.get("InstitutionName") and not ds.get("ReferringPhysicianName")  # X/Z/D, Z: empty
            assert ds.pixel_array.size  # pixels still decode


def test_dates_are_shifted_not_deleted_and_intervals_survive(archive):
    pipe, _, _ = archive
    shifted = {}
    for tarball in pipe.tarballs():
        for ds in datasets(tarball).values():
            assert ds.StudyDate not in {s.study_date for s in STUDIES}
            assert ds.SeriesDate == ds.StudyDate  # every date of a file moved by the same days
            assert ds.PatientBirthDate == ""  # Z in the profile: not kept, not even shifted
            shifted[str(ds.AccessionNumber)] = ds.StudyDate
    # the two studies of one patient lie as many days apart as before
    coded = {pipe.batch_dirs()[s.folder].name: s for s in SHARED_PATIENT}
    rows = {r["BatchKey"]: r for r in pipe.rows()}
    first, second = (rows[key] for key in coded)
    planted = (day(SHARED_PATIENT[1].study_date) - day(SHARED_PATIENT[0].study_date)).days
    assert (day(second["StudyDate"]) - day(first["StudyDate"])).days == planted != 0
    assert first["CodedPatientID"] == second["CodedPatientID"]


def day(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


def test_no_planted_phi_in_any_output_byte(archive):
    pipe, _, _ = archive
    planted = [v for s in STUDIES for v in s.phi()] + [s.study_date for s in STUDIES]
    outputs = every_output_byte(pipe)
    assert len(outputs) > 10
    for name, data in outputs:
        for value in planted:
            assert value.encode() not in data, f"{value!r} found in {name}"


def test_original_uids_are_gone_but_studies_and_series_stay_grouped(archive):
    pipe, _, _ = archive
    originals = set()
    for study in STUDIES:
        for path in (pipe.input / study.folder).rglob("IM*"):
            ds = pydicom.dcmread(path)
            originals |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    for tarball in pipe.tarballs():
        found = datasets(tarball)
        assert len({ds.StudyInstanceUID for ds in found.values()}) == 1
        for ds in found.values():
            assert not {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID} & originals
            assert ds.SOPInstanceUID.startswith("2.25.")


def test_same_patient_in_two_batches_gets_the_same_coded_id(archive):
    pipe, _, _ = archive
    rows = {r["BatchKey"]: r for r in pipe.rows()}
    dirs = pipe.batch_dirs()
    a, b, c = (rows[dirs[s.folder].name] for s in STUDIES)
    assert a["CodedPatientID"] == b["CodedPatientID"] != c["CodedPatientID"]
    assert a["CodedAccessionNumberID"] != b["CodedAccessionNumberID"]
    # the shift is per patient: both studies of patient 1 moved by the same days
    ja = json.loads((dirs[STUDIES[0].folder] / "identifiers.json").read_text())["jitter_days"]
    jb = json.loads((dirs[STUDIES[1].folder] / "identifiers.json").read_text())["jitter_days"]
    assert ja == jb != 0


def test_one_metadata_row_per_study_with_sendit_columns(archive):
    pipe, _, _ = archive
    rows = pipe.rows()
    assert len(rows) == 3
    for row in rows:
        assert row["storage_download"].endswith(".tar.gz")
        assert row["ContentType"] == "application/gzip"
        header = json.loads(row["DicomHeader"])
        assert header["PatientIdentityRemoved"] == "YES"
        assert row["ImageCount"] >= 1 and row["SeriesCount"] >= 1 and row["SizeBytes"] > 0


def test_folders_still_being_copied_are_skipped(archive):
    pipe, _, _ = archive
    assert set(pipe.batch_dirs()) == {s.folder for s in STUDIES} | {"ACCN49999"}


def test_empty_batch_is_recorded_as_empty(archive):
    pipe, _, _ = archive
    df = pipe.metrics().set_index("batch")
    empty = pipe.batch_dirs()["ACCN49999"].name
    assert df.loc[empty, "status"] == "empty"
    assert df.loc[empty, "files"] == 0
    assert "no files" in df.loc[empty, "error"]


def test_bad_files_are_that_batchs_errors_and_the_rest_goes_through(archive):
    pipe, _, _ = archive
    df = pipe.metrics().set_index("batch")
    key = pipe.batch_dirs()[OTHER.folder].name
    row = df.loc[key]
    assert row["status"] == "uploaded"
    assert row["files"] == 8 and row["files_error"] == 4
    errors = row["errors"]
    folder = pipe.input / OTHER.folder
    for name in ("corrupt.dcm", "truncated", "zero", "notes.txt"):
        assert f"{file_label(folder, name)}: " in errors and name not in errors
    assert "empty file (0 bytes)" in errors
    assert "not a DICOM file" in errors
    tarball = [
        t
        for t in pipe.tarballs()
        if json.loads((pipe.batch_dirs()[OTHER.folder] / "result.json").read_text())["tarball_name"] == t.name
    ][0]
    assert len(members(tarball)) == 4


def test_metrics_have_one_row_per_batch_with_stage_times(archive):
    pipe, _, _ = archive
    df = pipe.metrics()
    assert len(df) == 4
    assert sorted(df["status"]) == ["empty", "uploaded", "uploaded", "uploaded"]
    done = df[df["status"] == "uploaded"]
    for stage in ("headers", "identifiers", "anonymize", "upload"):
        assert (done[f"{stage}_seconds"] >= 0).all()
        assert (done[f"{stage}_end"] >= done[f"{stage}_start"]).all()
    assert (done["bytes_out"] > 0).all() and (done["bytes_in"] > 0).all()


def test_input_tree_is_unchanged(archive):
    pipe, _, before = archive
    assert tree_digest(pipe.input) == before


def test_work_dir_is_private(archive):
    pipe, _, _ = archive
    assert pipe.work.stat().st_mode & 0o077 == 0
    for path in pipe.work.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".key", ".sqlite"):
            assert path.stat().st_mode & 0o077 == 0, path


def test_status_command_lists_batches_and_errors(archive):
    pipe, _, _ = archive
    out = pipe.cli("status").stdout
    assert "uploaded" in out and "empty" in out
    errors = pipe.cli("status", "--errors").stdout
    assert f"{file_label(pipe.input / OTHER.folder, 'corrupt.dcm')}: " in errors and "no files" in errors
    assert "corrupt.dcm" not in errors
    for value in OTHER.phi():
        assert value not in out + errors
