"""Hostile and malformed DICOM files, made byte by byte where pydicom would refuse to write them."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CONTENT_SEQUENCE = b"\x40\x00\x30\xa7"  # (0040,A730), the last tag a header-only object has


def header_only(patient_id: str, name: str, accession: str, study_date: str = "20170304") -> FileDataset:
    """A small valid explicit-VR object without pixel data (so raw elements can be appended in tag order)."""
    ds = FileDataset("x", Dataset(), preamble=b"\0" * 128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber, ds.StudyDate = patient_id, name, accession, study_date
    ds.InstitutionName = f"{name.split('^')[0]} CLINIC"
    ds.Manufacturer = "ACME"
    return ds


def to_bytes(ds: FileDataset) -> bytes:
    import io

    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_vr(data: bytes, tag: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with the VR of the explicit-VR element ``tag`` changed from ``old`` to ``new``."""
    at = data.index(tag + old)
    return data[:at] + tag + new + data[at + 6 :]


def wrong_vr_on_patient_id(folder: Path, patient_id: str, name: str, accession: str) -> Path:
    """PatientID stored as UL: its 10 bytes are no multiple of 4 (pydicom's BytesLengthException quotes them)."""
    assert len(patient_id) % 4 == 2
    data = to_bytes(header_only(patient_id, name, accession))
    path = folder / "wrong-vr"
    path.write_bytes(with_vr(data, b"\x10\x00\x20\x00", b"LO", b"UL"))
    return path


def unknown_vr(folder: Path, patient_id: str, name: str, accession: str) -> Path:
    """Manufacturer (kept, so it must be decoded) with the VR 'ZZ', which DICOM does not have."""
    data = to_bytes(header_only(patient_id, name, accession))
    path = folder / "unknown-vr"
    path.write_bytes(with_vr(data, b"\x08\x00\x70\x00", b"LO", b"ZZ"))
    return path


def deeply_nested(folder: Path, depth: int, patient_id: str, name: str, accession: str, label: str = "") -> Path:
    """Content sequences nested ``depth`` levels deep, undefined lengths (a few KB for hundreds of levels)."""
    data = to_bytes(header_only(patient_id, name, accession))
    start = CONTENT_SEQUENCE + b"SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    end = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    path = folder / f"nested-{depth}{label}"
    path.write_bytes(data + start * depth + end * depth)
    return path


def truncated_pixels(folder: Path, like: Path) -> Path:
    """A CT whose pixel data holds half the bytes that Rows x Columns x BitsAllocated say (the length says so too)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    template = pydicom.dcmread(like, stop_before_pixels=True)
    for keyword in ("PatientID", "PatientName", "AccessionNumber", "StudyDate", "StudyInstanceUID"):
        setattr(ds, keyword, template[keyword].value)
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = folder / "half-image"
    ds.save_as(path, enforce_file_format=True)
    return path
