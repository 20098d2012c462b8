"""Files seeded with distinctive PHI strings in every place PHI hides."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid


def item(**values) -> Dataset:
    d = Dataset()
    for k, v in values.items():
        setattr(d, k, v)
    return d


class Seeded:
    """One seeded study: ``values`` are every planted string, ``uids`` the planted UIDs."""

    def __init__(self, tag: str):
        self.tag = tag
        self.values: list[str] = []
        self.uids: list[str] = []

    def v(self, what: str) -> str:
        value = f"PHI{self.tag}{what}"
        self.values.append(value)
        return value

    def uid(self, what: str) -> str:
        value = generate_uid(entropy_srcs=[self.tag, what])
        self.uids.append(value)
        return value


def seeded_dataset(s: Seeded, index: int, study_uid: str, series_uid: str, previous_sop: str | None) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = f"{s.v('FAMILY')}^{s.v('GIVEN')}"
    ds.PatientID = s.v("MRN")
    ds.AccessionNumber = s.v("ACC")[:16]
    ds.IssuerOfPatientID = s.v("ISSUER")
    ds.OtherPatientIDs = [s.v("OTHERID1"), s.v("OTHERID2")]
    ds.OtherPatientNames = s.v("ALIAS")
    ds.PatientMotherBirthName = s.v("MOTHER")
    ds.PatientAddress = s.v("ADDRESS") + " 12 ELM STREET"
    ds.PatientTelephoneNumbers = s.v("PHONE")
    ds.PatientComments = "patient " + s.v("COMMENT")
    ds.InstitutionName = s.v("HOSPITAL")
    ds.InstitutionAddress = s.v("HOSPADDR")
    ds.InstitutionalDepartmentName = s.v("DEPT")
    ds.StationName = s.v("STATION")
    ds.ReferringPhysicianName = s.v("REFDOC")
    ds.PerformingPhysicianName = s.v("PERFDOC")
    ds.NameOfPhysiciansReadingStudy = s.v("READER")
    ds.OperatorsName = s.v("OPERATOR")
    ds.RequestingPhysician = s.v("REQDOC")
    ds.StudyID = s.v("STUDYID")[:16]
    ds.DeviceSerialNumber = s.v("SERIAL")
    # Planted dates lie more than 2 * max_jitter_days apart, so no shifted date can equal another planted one.
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20170304"
    ds.PatientBirthDate = "19500607"
    ds.AcquisitionDateTime = "20170304111213"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = s.uid(f"sop{index}")
    ds.FrameOfReferenceUID = s.uid("frame")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = s.v("AETITLE")[:16]
    ds.OtherPatientIDsSequence = Sequence([item(PatientID=s.v("SEQID"), IssuerOfPatientID=s.v("SEQISSUER"))])
    ds.RequestAttributesSequence = Sequence(
        [
            item(
                RequestedProcedureID=s.v("RPID")[:16],
                ScheduledProcedureStepID=s.v("SPSID")[:16],
                ScheduledPerformingPhysicianName=s.v("SCHEDDOC"),
            )
        ]
    )
    ds.ReferencedStudySequence = Sequence(
        [item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1", ReferencedSOPInstanceUID=s.uid("refstudy"))]
    )
    ds.ProcedureCodeSequence = Sequence(
        [
            item(
                CodeValue="CT0001",
                CodeMeaning="CT HEAD",
                PurposeOfReferenceCodeSequence=Sequence(
                    [item(CodeValue="X", ContentCreatorName=s.v("DEEPNAME"), InstanceCreationDate="20170815")]
                ),
            )
        ]
    )
    if previous_sop:
        ds.ReferencedImageSequence = Sequence(
            [item(ReferencedSOPClassUID=ds.SOPClassUID, ReferencedSOPInstanceUID=previous_sop)]
        )
    block = ds.private_block(0x0029, "PHI VENDOR", create=True)
    block.add_new(0x10, "LO", s.v("PRIVATE"))
    block.add_new(0x11, "SQ", Sequence([item(PatientName=s.v("PRIVSEQ"))]))
    return ds


def write_seeded_study(folder: Path, tag: str, files: int = 3) -> Seeded:
    s = Seeded(tag)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = s.uid("study"), s.uid("series")
    previous = None
    for i in range(files):
        ds = seeded_dataset(s, i, study_uid, series_uid, previous)
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"slice{i}", enforce_file_format=True)
        previous = ds.SOPInstanceUID
    return s
