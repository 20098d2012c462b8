"""The compiled recipe: what happens to each kind of element, at any depth."""

from __future__ import annotations

import copy

import pydicom
import pytest
from conftest import RECIPE, recipe_for
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sendit_luigi.deidentify import Context, shift_date, uid_remapper
from sendit_luigi.errors import RecipeError
from sendit_luigi.workdir import Keyed


def ctx(jitter: int = -10) -> Context:
    keyed = Keyed(b"k" * 64)
    return Context(
        {"patient_id": "PCODED", "accession": "ACODED", "jitter": jitter}, jitter, uid_remapper(keyed, "2.25.")
    )


def item(**values) -> Dataset:
    d = Dataset()
    for k, v in values.items():
        setattr(d, k, v)
    return d


@pytest.fixture
def ct() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "NESTED^SECRET"
    ds.PatientID = "ID-SECRET"
    ds.AccessionNumber = "ACC-SECRET"
    ds.StudyDate = "20200229"
    ds.AcquisitionDateTime = "20200301101500.123"
    ds.ReferringPhysicianName = "DOCTOR^SECRET"
    ds.InstitutionAddress = "1 SECRET ROAD"
    ds.OtherPatientIDsSequence = Sequence([item(PatientID="OTHER-SECRET", IssuerOfPatientID="X")])
    ds.RequestAttributesSequence = Sequence([item(RequestedProcedureID="RP-SECRET", ScheduledProcedureStepID="SPS")])
    ds.ReferencedImageSequence = Sequence(
        [item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID="1.2.3.4.5.6.7")]
    )
    ds.ProcedureCodeSequence = Sequence(
        [item(CodeValue="X1", PerformingPhysicianName="NURSE^SECRET", InstanceCreationDate="20200101")]
    )
    ds.add_new(0x00091010, "LO", "PRIVATE-SECRET")
    return ds


def test_identity_is_replaced_by_coded_values(ct):
    recipe_for(RECIPE).apply(ct, ctx())
    assert ct.PatientID == "PCODED" and ct.PatientName == "PCODED"
    assert ct.AccessionNumber == "ACODED" and ct.StudyID == "ACODED"
    assert ct.PatientIdentityRemoved == "YES"
    assert ct.LongitudinalTemporalInformationModified == "MODIFIED"


def test_names_ids_and_addresses_go_at_every_depth(ct):
    recipe_for(RECIPE).apply(ct, ctx())
    text = str(ct)
    for secret in ("DOCTOR^SECRET", "NURSE^SECRET", "1 SECRET ROAD", "OTHER-SECRET", "RP-SECRET", "NESTED^SECRET"):
        assert secret not in text
    assert "OtherPatientIDsSequence" not in ct and "RequestAttributesSequence" not in ct
    assert ct.ProcedureCodeSequence[0].CodeValue == "X1"  # codes survive


def test_private_tags_are_removed(ct):
    recipe_for(RECIPE).apply(ct, ctx())
    assert not any(e.tag.is_private for e in ct.iterall())


def test_allowed_private_creator_block_is_kept(ct):
    block = ct.private_block(0x0011, "KEEP ME", create=True)
    block.add_new(0x01, "LO", "acquisition detail")
    recipe_for(RECIPE, frozenset({"KEEP ME"})).apply(ct, ctx())
    assert ct.private_block(0x0011, "KEEP ME")[0x01].value == "acquisition detail"
    assert 0x00091010 not in ct


def test_dates_shift_by_the_jitter_at_every_depth_and_times_stay(ct):
    recipe_for(RECIPE).apply(ct, ctx(-10))
    assert ct.StudyDate == "20200219"
    assert ct.AcquisitionDateTime == "20200220101500.123"
    assert ct.ProcedureCodeSequence[0].InstanceCreationDate == "20191222"
    assert ct.StudyTime == pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyTime


def test_uids_are_remapped_consistently_and_standard_ones_kept(ct):
    original = copy.deepcopy(ct)
    other = copy.deepcopy(ct)
    recipe = recipe_for(RECIPE)
    recipe.apply(ct, ctx())
    recipe.apply(other, ctx())
    assert ct.SOPInstanceUID != original.SOPInstanceUID and ct.SOPInstanceUID.startswith("2.25.")
    assert ct.SOPInstanceUID == other.SOPInstanceUID  # same input, same output
    assert ct.SOPClassUID == original.SOPClassUID
    ref = ct.ReferencedImageSequence[0]
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    referenced = copy.deepcopy(original)  # the instance that the reference points at, de-identified alone
    referenced.SOPInstanceUID = "1.2.3.4.5.6.7"
    recipe.apply(referenced, ctx())
    assert ref.ReferencedSOPInstanceUID == referenced.SOPInstanceUID != "1.2.3.4.5.6.7"
    assert ct.file_meta.MediaStorageSOPInstanceUID == ct.SOPInstanceUID
    assert all(len(str(e.value)) <= 64 for e in ct.iterall() if e.VR == "UI")


def test_the_plan_is_compiled_once_per_header_layout(ct):
    recipe = recipe_for(RECIPE)
    a, b = copy.deepcopy(ct), copy.deepcopy(ct)
    b.PatientName = "SOMEONE^ELSE"
    recipe.apply(a, ctx())
    recipe.apply(b, ctx())
    assert len(recipe._plans) == 1
    c = copy.deepcopy(ct)
    c.ReferencedImageSequence.append(item(ReferencedSOPInstanceUID="9.8.7"))
    recipe.apply(c, ctx())
    assert len(recipe._plans) == 2
    assert c.ReferencedImageSequence[1].ReferencedSOPInstanceUID.startswith("2.25.")


def test_a_missing_variable_stops_instead_of_keeping_the_original(ct, tmp_path):
    recipe = tmp_path / "r.dicom"
    recipe.write_text("FORMAT dicom\n%header\nREPLACE PatientID var:not_provided\n")
    with pytest.raises(RecipeError, match="var:not_provided"):
        recipe_for(recipe).apply(ct, ctx())


def test_recipe_problems_are_clear_errors_not_exits(tmp_path):
    bad = tmp_path / "bad.dicom"
    bad.write_text("FORMAT dicom\n%header\nREPLACE PatientID\n")
    with pytest.raises(RecipeError, match="could not be parsed"):
        recipe_for(bad)
    unknown = tmp_path / "unknown.dicom"
    unknown.write_text("FORMAT dicom\n%header\nREPLACE PatientID func:nope\n")
    with pytest.raises(RecipeError, match="unknown function"):
        recipe_for(unknown)
    with pytest.raises(RecipeError, match="does not exist"):
        recipe_for(tmp_path / "missing.dicom")


@pytest.mark.parametrize(
    "value, days, vr, expected",
    [
        ("20200229", 1, "DA", "20200301"),
        ("20200301", -1, "DA", "20200229"),
        ("19991231", 1, "DA", "20000101"),
        ("20200301120000.5+0100", -1, "DT", "20200229120000.5+0100"),
        ("2020", 5, "DT", ""),
        ("20201399", 1, "DA", ""),
        ("", 1, "DA", ""),
    ],
)
def test_shift_date(value, days, vr, expected):
    assert shift_date(value, days, vr) == expected
