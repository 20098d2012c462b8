"""Scenarios: objects that are not plain images (DICOMDIR, Command Set elements, SR, RT) go through the
same table; a recipe change is shown by ``status`` and redone only when the operator says so."""

from __future__ import annotations

import json

import pydicom
from conftest import datasets, every_output_byte, file_label, make_study
from hostile import header_only, to_bytes
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sendit_luigi.sample_data import write_study

PHI = {
    "PatientID": "PHIOBJMRN1",
    "PatientName": "PHIOBJDOE^JANE",
    "AccessionNumber": "PHIOBJACC1",
    "StudyDate": "20170304",
    "InstitutionName": "PHIOBJ HOSPITAL",
    "ReferringPhysicianName": "PHIOBJREF^DOC",
}
STUDY_UID = generate_uid()


def as_planted(name: str, folder, filename: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file(name), force=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = STUDY_UID
    ds.save_as(folder / filename, enforce_file_format=True)
    return ds


def test_a_dicomdir_is_skipped_counted_and_never_packed(pipe):
    folder = write_study(pipe.input, make_study(1), 2, nested=False)
    index = header_only(make_study(1).patient_id, make_study(1).patient_name, make_study(1).accession)
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    record = Dataset()
    record.DirectoryRecordType, record.PatientName, record.PatientID = "PATIENT", "PHIDIRDOE^JOHN", "PHIDIRMRN"
    index.DirectoryRecordSequence = Sequence([record])
    index.save_as(folder / "DICOMDIR", enforce_file_format=True)
    assert pipe.run().code == 0
    row = pipe.metrics().iloc[0]
    assert row["status"] == "uploaded" and row["files_skipped"] == 1 and row["files_error"] == 0
    assert f"{file_label(folder, 'DICOMDIR')}: skipped (a DICOMDIR" in row["errors"]
    assert len(datasets(pipe.tarballs()[0])) == 2
    for _, data in every_output_byte(pipe):
        assert b"PHIDIRDOE" not in data and b"PHIDIRMRN" not in data


def test_command_set_elements_are_dropped_instead_of_failing_the_file(pipe):
    folder = pipe.input / "ACCNCMD"
    folder.mkdir(parents=True)
    ds = header_only("PHICMDMRN1", "PHICMDDOE^JANE", "PHICMDACC")
    data = to_bytes(ds)
    meta_end = data.index(b"\x08\x00\x05\x00") if b"\x08\x00\x05\x00" in data else data.index(b"\x08\x00\x16\x00")
    uid = b"1.2.826.0.1.3680043.95.7"  # AffectedSOPInstanceUID (0000,1000), as a PACS may leave it
    command = b"\x00\x00\x00\x10" + b"UI" + len(uid).to_bytes(2, "little") + uid
    (folder / "with-command-set").write_bytes(data[:meta_end] + command + data[meta_end:])
    assert pydicom.dcmread(folder / "with-command-set").get((0x0000, 0x1000)) is not None
    assert pipe.run().code == 0
    [ds_out] = datasets(pipe.tarballs()[0]).values()
    assert not any(e.tag.group == 0 for e in ds_out)
    for _, blob in every_output_byte(pipe):
        assert uid not in blob


def test_structured_reports_and_rt_objects_go_through_the_same_table(pipe):
    folder = pipe.input / "ACCNOBJECTS"
    folder.mkdir(parents=True)
    sr = as_planted("test-SR.dcm", folder, "report")
    struct = as_planted("rtstruct.dcm", folder, "structures")
    plan = as_planted("rtplan.dcm", folder, "plan")
    run = pipe.run()
    assert run.code == 0, run.output
    row = pipe.metrics().iloc[0]
    assert row["files_error"] == 0, row["errors"]
    out = {ds.SOPClassUID: ds for ds in datasets(pipe.tarballs()[0]).values()}
    assert len(out) == 3
    report = out[sr.SOPClassUID]
    assert len(report.get("ContentSequence", [])) == 0  # Content Sequence: D (its text would stay otherwise)
    structures = out[struct.SOPClassUID]
    assert [r.ROIName for r in structures.StructureSetROISequence] == [
        r.ROIName for r in struct.StructureSetROISequence
    ]
    ref = structures.ReferencedFrameOfReferenceSequence[0]
    before = struct.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID.startswith("2.25.") and ref.FrameOfReferenceUID != before.FrameOfReferenceUID
    study_ref = ref.RTReferencedStudySequence[0]  # references remapped, not removed
    assert study_ref.ReferencedSOPInstanceUID.startswith("2.25.")
    assert study_ref.ReferencedSOPInstanceUID != before.RTReferencedStudySequence[0].ReferencedSOPInstanceUID
    assert len(structures.ROIContourSequence[0].ContourSequence) == len(struct.ROIContourSequence[0].ContourSequence)
    assert out[plan.SOPClassUID].RTPlanLabel == plan.RTPlanLabel  # D, but kept cleaned: Clean Descriptors
    planted = list(PHI.values()) + ["PHIOBJDOE", "PHIOBJ", str(sr.SOPInstanceUID), str(struct.SOPInstanceUID)]
    for where, data in every_output_byte(pipe):
        for value in planted:
            if value != "20170304":
                assert value.encode() not in data, f"{value} in {where}"


def test_a_recipe_change_is_shown_and_redone_only_when_asked(pipe):
    study = make_study(1)
    write_study(pipe.input, study, 2, nested=False)
    assert pipe.run().code == 0
    [tarball] = pipe.tarballs()
    first = tarball.read_bytes()
    assert "current" in pipe.cli("status").stdout and "older" not in pipe.cli("status").stdout

    pipe.settings["deid.profile_options"] = "retain_longitudinal_modified_dates,clean_descriptors"
    status = pipe.cli("status").stdout
    assert "older" in status and "reprocess --older-recipe" in status
    again = pipe.run()
    assert again.code == 0 and again.ran("Anonymize") == 0  # nothing is redone silently
    assert tarball.read_bytes() == first

    assert "1 batches will be de-identified and uploaded again" in pipe.cli("reprocess", "--older-recipe").stdout
    redo = pipe.run()
    assert redo.code == 0, redo.output
    assert redo.ran("Anonymize") == 1
    assert pipe.tarballs() == [tarball] and tarball.read_bytes() != first  # replaced, not a second object
    for ds in datasets(tarball).values():
        assert {i.CodeValue for i in ds.DeidentificationMethodCodeSequence} == {"113100", "113105", "113107"}
    assert len(pipe.rows()) == 1
    assert "older" not in pipe.cli("status").stdout
    result = json.loads(next(pipe.work.rglob("result.json")).read_text())
    assert result["recipe_hash"] in next(iter(datasets(tarball).values())).DeidentificationMethod
