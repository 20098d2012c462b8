"""Property: whatever identifying values sit wherever in a header, none reaches a packed file."""

from __future__ import annotations

import datetime as dt
import gzip
import string

import pydicom
from conftest import recipe_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sendit_luigi.deidentify import Context, LeakCheck, pack_study, uid_remapper
from sendit_luigi.headers import extract_headers
from sendit_luigi.workdir import Keyed

RECIPE = recipe_for()
KEYED = Keyed(b"p" * 64)
JITTER = -17

TEXT_FIELDS = [
    "PatientName",
    "ReferringPhysicianName",
    "OperatorsName",
    "PerformingPhysicianName",
    "ContentCreatorName",
    "PersonName",
    "ScheduledPerformingPhysicianName",
    "OtherPatientNames",
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "PatientAddress",
    "InstitutionAddress",
    "InstitutionName",
    "PersonAddress",
    "PatientComments",
    "ImageComments",
    "AdditionalPatientHistory",
    "StationName",
    "DeviceSerialNumber",
]
SHORT_FIELDS = ["AccessionNumber", "StudyID", "RequestedProcedureID"]  # SH: 16 characters at most
UID_FIELDS = ["ReferencedSOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"]
DATE_FIELDS = ["StudyDate", "PatientBirthDate", "InstanceCreationDate", "ContentDate"]
SEQUENCES = [
    "ReferencedStudySequence",
    "ProcedureCodeSequence",
    "RequestAttributesSequence",
    "ReferencedSeriesSequence",
    "AnatomicRegionSequence",
]

value = st.text(string.ascii_uppercase + string.digits, min_size=7, max_size=14).map(lambda s: "Q" + s)
uid = st.lists(st.integers(1, 99999), min_size=3, max_size=8).map(lambda xs: "1.2.826.0.1." + ".".join(map(str, xs)))
date = st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2030, 1, 1))
path = st.lists(st.sampled_from(SEQUENCES), max_size=3)
planted = st.one_of(
    st.tuples(path, st.sampled_from(TEXT_FIELDS), value),
    st.tuples(path, st.sampled_from(SHORT_FIELDS), value.map(lambda v: v[:16])),
    st.tuples(path, st.sampled_from(UID_FIELDS), uid),
    st.tuples(path, st.sampled_from(DATE_FIELDS), date.map(lambda d: d.strftime("%Y%m%d"))),
    st.tuples(path, st.just("private"), value),
)


def place(ds: Dataset, seqs: list[str], keyword: str, text: str) -> None:
    node = ds
    for name in seqs:
        if name not in node:
            setattr(node, name, Sequence([Dataset()]))
        node = getattr(node, name)[0]
    if keyword == "private":
        node.private_block(0x0041, "FUZZ VENDOR", create=True).add_new(0x10, "LO", text)
    else:
        setattr(node, keyword, text)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: conftest's profile
@given(st.lists(planted, min_size=1, max_size=12))
def test_no_planted_value_survives(tmp_path_factory, plants):
    work = tmp_path_factory.mktemp("prop")
    folder = work / "batch"
    folder.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for seqs, keyword, text in plants:
        place(ds, seqs, keyword, text)
    ds.save_as(folder / "file", enforce_file_format=True)

    headers = extract_headers(folder, [], RECIPE.profile)
    leak = LeakCheck.for_study(headers["phi"], JITTER)
    ctx = Context({"patient_id": "PCODE", "accession": "ACODE", "jitter": JITTER}, JITTER, uid_remapper(KEYED, "2.25."))
    result = pack_study(folder, [], headers["files"], RECIPE, ctx, leak, work / "out.tar.gz", work / "scratch", 1)

    assert result.packed == 1, result.files  # the recipe removed everything; the leak check passed
    plain = gzip.decompress((work / "out.tar.gz").read_bytes())
    for _, keyword, text in plants:
        if keyword in DATE_FIELDS and text in leak.allowed:
            continue  # an original date equal to some shifted date is not a leak
        assert text.encode() not in plain, (keyword, text)
