"""Scenario: a study whose files carry every attribute of Table E.1-1 goes through ProcessAll.

No marked value of an attribute the profile removes, empties, replaces or
shifts is in any output byte, object name, metadata row, metrics row or log
line; the attributes that a declared option keeps are there.
"""

from __future__ import annotations

import pytest
from conftest import Pipeline, datasets, every_output_byte
from profile_rows import CONTAINER, NAME, allowed, planted_rows
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from test_profile_every_attribute import REPLACED

FILES = 4
IDENTITY = {
    "PatientID": "MRKPID0001",
    "AccessionNumber": "MRKACC0001",
    "PatientName": f"{NAME}^MRKGIVEN",
    "StudyDate": "20170304",
}
ROWS = [
    p
    for p in planted_rows()
    if p.tag >> 16 not in (0, 2)
    and p.keyword not in IDENTITY
    and p.keyword not in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
]


def write_file(path, number: int) -> None:
    ds = FileDataset(str(path), Dataset(), preamble=b"\0" * 128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.96.{number}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.96.100", "1.2.826.0.1.3680043.96.101"
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    nested = Dataset()
    for p in ROWS[number::FILES]:
        p.plant(ds)
        p.plant(nested)
    ds.add_new(CONTAINER, "SQ", Sequence([nested]))
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def every_attribute(tmp_path_factory):
    pipe = Pipeline(tmp_path_factory.mktemp("profile"))
    folder = pipe.input / "MRKFOLDER1"
    folder.mkdir(parents=True)
    for number in range(FILES):
        write_file(folder / f"MRKFILE{number}", number)
    run = pipe.run("--log-level", "DEBUG")
    assert run.code == 0, run.output
    return pipe, run


def test_every_file_is_packed(every_attribute):
    pipe, _ = every_attribute
    [tarball] = pipe.tarballs()
    assert len(datasets(tarball)) == FILES
    assert (pipe.metrics()["files_error"] == 0).all(), pipe.metrics()["errors"].tolist()


def test_no_marked_value_that_the_profile_removes_is_in_any_output(every_attribute):
    pipe, run = every_attribute
    gone, kept = [], []
    for p in ROWS:
        codes = allowed(p, REPLACED)
        if p.needle:
            (kept if codes & {"K", "CLEAN"} else gone).append(p.needle)
    gone += ["MRKPID0001", "MRKACC0001", NAME, "MRKGIVEN", "MRKFOLDER1", "MRKFILE", "1.2.826.0.1.3680043.96."]
    assert len(gone) > 400
    outputs = every_output_byte(pipe) + [("luigi log", run.output.encode())]
    for where, data in outputs:
        found = [mark for mark in gone if mark.encode() in data]
        assert not found, f"{found[:5]} in {where}"
    plain = b"".join(data for where, data in outputs if where.endswith("(gunzipped)"))
    missing = [mark for mark in kept if mark.encode() not in plain]
    assert not missing, f"kept by a declared option, but not in the output: {missing[:5]}"
