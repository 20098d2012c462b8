"""Benchmark data: N batches x M files from real DICOM files shipped on PyPI.

Sources range from small CT and MR slices (10-40 KB) through JPEG-compressed
CT (15 KB), photographs and ultrasound (0.6-2.4 MB) to a 16 MB radiograph,
and each file gets realistic header variety: referenced-study and procedure
sequences, request attributes, other patient ids, institution and physician
names, and a private block.
"""

from __future__ import annotations

from pathlib import Path

import deid_data
import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

PYD = Path(pydicom.data.__file__).parent / "test_files"
DD = Path(deid_data.__file__).parent / "data"

SMALL = [PYD / "CT_small.dcm", PYD / "MR_small.dcm", DD / "humans" / "ctbrain1.dcm", PYD / "liver_1frame.dcm"]
LARGE = [DD / "dicom-cookies" / "image1.dcm", DD / "ultrasounds" / "RGB_IMAGE.dcm", DD / "animals" / "cat.dcm"]
MIXES = {"small": SMALL, "mixed": SMALL * 3 + LARGE[:2], "ct": [PYD / "CT_small.dcm"]}


def _item(**values) -> Dataset:
    d = Dataset()
    for k, v in values.items():
        setattr(d, k, v)
    return d


def decorate(ds: Dataset, patient: str, accession: str, date: str, study_uid: str, series_uid: str, n: int) -> None:
    ds.PatientID, ds.PatientName, ds.AccessionNumber = patient, f"BENCH^{patient}", accession
    ds.PatientBirthDate = "19600101"
    for keyword in ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate"):
        setattr(ds, keyword, date)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = n + 1
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstitutionName, ds.ReferringPhysicianName = "BENCH HOSPITAL", "REF^DOCTOR"
    ds.OtherPatientIDs = patient + "-2"
    ds.ReferencedStudySequence = Sequence(
        [_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1", ReferencedSOPInstanceUID=generate_uid())]
    )
    ds.RequestAttributesSequence = Sequence([_item(RequestedProcedureID="RP1", ScheduledProcedureStepID="S1")])
    ds.ProcedureCodeSequence = Sequence([_item(CodeValue="CT1", CodeMeaning="CT HEAD")])
    block = ds.private_block(0x0029, "BENCH VENDOR", create=True)
    block.add_new(0x10, "LO", "vendor detail")


def make_batches(root: Path, batches: int, files: int, mix: str = "small") -> list[Path]:
    """Write ``batches`` folders of ``files`` files each; return the file paths."""
    sources = [pydicom.dcmread(p) for p in MIXES[mix]]
    written = []
    for b in range(batches):
        folder = root / f"BENCHACC{b:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        study, series = generate_uid(), generate_uid()
        for n in range(files):
            ds = sources[(b + n) % len(sources)].copy()
            decorate(ds, f"BMRN{b % max(batches // 2, 1):06d}", f"BACC{b:06d}", "20190312", study, series, n)
            path = folder / f"IM{n:05d}"
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
    return written


def make_multiframe_batch(folder: Path, total_bytes: int, frames_per_file: int = 400) -> list[Path]:
    """A batch of multi-frame CT files (512x512x2 bytes a frame) adding up to ``total_bytes``."""
    base = pydicom.dcmread(PYD / "CT_small.dcm")
    frame = np.resize(base.pixel_array, (512, 512)).astype(base.pixel_array.dtype)
    frame_bytes = frame.nbytes
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths, written, n = [], 0, 0
    while written < total_bytes:
        count = min(frames_per_file, max(1, (total_bytes - written) // frame_bytes))
        ds = base.copy()
        ds.Rows = ds.Columns = 512
        ds.NumberOfFrames = count
        ds.PixelData = np.broadcast_to(frame, (count, 512, 512)).tobytes()
        decorate(ds, "BMRNBIG", "BACCBIG", "20190312", study, series, n)
        path = folder / f"MF{n:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        written += path.stat().st_size
        n += 1
    return paths
