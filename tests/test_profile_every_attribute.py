"""Scenario: a data steward checks the profile attribute by attribute.

For every row of DICOM PS3.15 Table E.1-1 (read from the table file the
pipeline uses), a file carries the attribute with a valid marked value at the
top level and inside a sequence; the shipped recipe runs; the outcome must be
one the standard allows for that row with the default options in force.
"""

from __future__ import annotations

import copy

import pydicom
import pytest
from conftest import recipe_for
from profile_rows import CONTAINER, NAME, PROFILE, TABLE, allowed, outcome, planted_rows
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from sendit_luigi.deidentify import Context, LeakCheck, Profile, ProfileError, uid_remapper
from sendit_luigi.workdir import Keyed

ROWS = planted_rows()
RECIPE = recipe_for()
REPLACED = {a["field"] for a in RECIPE.actions if a["action"] == "REPLACE"}
PSEUDONYMS = {"PCODED", "ACODED"}
JITTER = -9


def context() -> Context:
    leak = LeakCheck([NAME, "MRKGIVEN"])
    return Context(
        {"patient_id": "PCODED", "accession": "ACODED", "jitter": JITTER},
        JITTER,
        uid_remapper(Keyed(b"t" * 64), "2.25."),
        clean=leak.clean,
    )


def base() -> FileDataset:
    ds = FileDataset("planted", Dataset(), preamble=b"\0" * 128)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.97.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.97.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.97.3"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def test_the_table_is_the_2026d_edition_and_every_row_resolves_to_one_rule():
    assert TABLE["source"]["edition"] == PROFILE.edition == "2026d"
    assert len(ROWS) == len(TABLE["rules"]) - 1 > 600  # every row but PRIVATE (the recipe step removes those)
    for p in ROWS:
        assert PROFILE.row(p.tag) is not None, p.id
        PROFILE.op(p.tag, p.vr)  # resolves, or raises


def test_a_row_with_an_action_this_version_does_not_know_is_refused(tmp_path):
    broken = copy.deepcopy(TABLE)
    broken["rules"][0]["basic"] = "Q"
    path = tmp_path / "table.json"
    path.write_text(__import__("json").dumps(broken))
    with pytest.raises(ProfileError, match="does not know"):
        Profile(path)


@pytest.mark.parametrize("p", ROWS, ids=[p.id for p in ROWS])
def test_every_attribute_of_the_table_is_handled_as_the_profile_says(p):
    ds = base()
    if p.tag >> 16 == 2:
        ds.file_meta.add_new(p.tag, p.vr, p.value())
        before = copy.deepcopy(ds.file_meta[p.tag])
        RECIPE.apply(ds, context())
        assert ds.file_meta[p.tag].value != before.value and str(ds.file_meta[p.tag].value).startswith("2.25.")
        return
    p.plant(ds)
    nested = Dataset()
    if p.tag >> 16 not in (0, 2):
        p.plant(nested)
        ds.add_new(CONTAINER, "SQ", Sequence([nested]))
    before = copy.deepcopy(ds[p.tag])
    RECIPE.apply(ds, context())
    expected = allowed(p, REPLACED)
    top = outcome(p, before, ds.get(p.tag), JITTER, PSEUDONYMS)
    assert top & expected, f"top level: {sorted(top)}, the profile allows {sorted(expected)}"
    if p.tag >> 16 not in (0, 2):
        inside = outcome(p, before, ds[CONTAINER].value[0].get(p.tag), JITTER, PSEUDONYMS)
        assert inside & (expected | ({"Z", "D"} if "PSEUDONYM" in expected else set())), (
            f"in a sequence: {sorted(inside)}, the profile allows {sorted(expected)}"
        )


def test_what_was_done_is_written_into_every_file():
    ds = base()
    RECIPE.apply(ds, context())
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod.startswith("sendit-luigi PS3.15-2026d sendit.dicom ")
    assert RECIPE.hash in ds.DeidentificationMethod and len(ds.DeidentificationMethod) <= 64
    codes = {(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence}
    # CID 7050: the profile, modified dates, patient characteristics, clean descriptors
    assert codes == {("113100", "DCM"), ("113107", "DCM"), ("113108", "DCM"), ("113105", "DCM")}
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_turning_an_option_off_applies_the_profiles_action():
    ds = base()
    ds.PatientAge, ds.PatientWeight, ds.StudyDate = "042Y", "70", "20200101"
    recipe_for(options="").apply(ds, context())
    assert "PatientAge" not in ds and "PatientWeight" not in ds  # X without Retain Patient Characteristics
    assert ds.StudyDate == "" or ds.StudyDate != "20200101"
    assert {i.CodeValue for i in ds.DeidentificationMethodCodeSequence} == {"113100"}
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_an_unsupported_or_unknown_option_is_refused():
    with pytest.raises(ProfileError, match="not carried out"):
        recipe_for(options="clean_structured_content")
    with pytest.raises(ProfileError, match="unknown"):
        recipe_for(options="retain_everything")


def test_a_recipe_that_keeps_what_the_profile_removes_is_refused(tmp_path):
    from sendit_luigi.errors import RecipeError

    path = tmp_path / "keep.dicom"
    path.write_text("FORMAT dicom\n%header\nKEEP InstitutionName\n")
    ds = base()
    ds.InstitutionName = "MRK HOSPITAL"
    with pytest.raises(RecipeError, match="turn on a profile option"):
        recipe_for(path).apply(ds, context())


def test_a_changed_recipe_or_option_gives_another_hash(tmp_path):
    other = tmp_path / "sendit.dicom"
    other.write_text(RECIPE_TEXT + "\nREMOVE Manufacturer\n")
    assert recipe_for(other).hash != RECIPE.hash
    assert recipe_for(options="retain_patient_characteristics").hash != RECIPE.hash
    assert recipe_for().hash == RECIPE.hash


RECIPE_TEXT = pydicom.__file__ and __import__("conftest").RECIPE.read_text()


def test_a_public_tag_no_dictionary_knows_is_removed_and_a_standard_one_kept():
    ds = base()
    ds.add_new(0xFFE0FFFF, "UN", b"SWALLOWED NEIGHBOURS: MRKSTUDYID")  # what a damaged file can turn into
    ds.Manufacturer = "ACME"  # a standard attribute the table does not name
    RECIPE.apply(ds, context())
    assert 0xFFE0FFFF not in ds and ds.Manufacturer == "ACME"


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
def test_the_method_codes_read_back_in_every_uncompressed_transfer_syntax(syntax):
    """The code sequence is added pre-encoded: it must read back in each byte order and VR style."""
    import io

    ds = base()
    ds.file_meta.TransferSyntaxUID = syntax
    RECIPE.apply(ds, context())
    out = io.BytesIO()
    uid = pydicom.uid.UID(syntax)
    pydicom.dcmwrite(
        out, ds, enforce_file_format=True, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian
    )
    back = pydicom.dcmread(io.BytesIO(out.getvalue()))
    assert back.file_meta.TransferSyntaxUID == syntax
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100", "113105", "113107", "113108"]
    assert back.DeidentificationMethodCodeSequence[1].CodeMeaning == "Clean Descriptors Option"
