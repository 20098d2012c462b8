"""Fuzzing: mutated real DICOM headers through stage 1 and stage 3, seeded and bounded.

Each mutant carries planted identifying values, then gets random damage: a
changed VR (valid, or one DICOM does not have), a changed length, a cut, deep
nesting, or another character set. Whatever it is, nothing may escape the
per-file handling, no error text may hold one of the file's values, and every
packed file must be clean. CI runs a fixed seed; ``make fuzz`` runs longer
(``FUZZ_EXAMPLES``, ``FUZZ_SEED``).
"""

from __future__ import annotations

import io
import os
import random
import tarfile

import pydicom
from conftest import recipe_for
from hostile import CONTENT_SEQUENCE
from pydicom.data import get_testdata_file

from sendit_luigi.deidentify import Context, LeakCheck, pack_study, uid_remapper
from sendit_luigi.headers import extract_headers
from sendit_luigi.workdir import Keyed

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
SOURCES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "ExplVR_BigEnd.dcm",
]
PLANTED = {
    "PatientName": "FUZZDOE^FUZZJANE",
    "PatientID": "FUZZMRN123456",
    "AccessionNumber": "FUZZACC77",
    "InstitutionName": "FUZZ GENERAL",
    "ReferringPhysicianName": "FUZZREFDOC^X",
    "StudyID": "FUZZSTUDY",
}
VRS = [
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"TM",
    b"UI",
    b"UL",
    b"UN",
    b"US",
    b"UT",
    b"ZZ",
    b"\x00\x00",
    b"Q!",
]
RECIPE = recipe_for()


def planted_file(name: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name), force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    for keyword, value in PLANTED.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random kinds of damage in the header (the first 2 KB after the preamble)."""
    data = bytearray(data)
    header_end = min(len(data), 2048)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["vr", "vr", "length", "cut", "nest", "charset", "bytes"])
        at = rng.randrange(132, header_end - 8)
        if kind == "vr":  # find the next explicit VR-looking pair of capitals and replace it
            for i in range(at, header_end - 2):
                if 65 <= data[i] <= 90 and 65 <= data[i + 1] <= 90:
                    data[i : i + 2] = rng.choice(VRS)
                    break
        elif kind == "length":
            data[at : at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x01\x00", b"\xfe\xff"])
        elif kind == "cut":
            return bytes(data[: rng.randrange(132, len(data))])
        elif kind == "nest":
            depth = rng.choice([5, 33, 60, 400])
            start = CONTENT_SEQUENCE + b"SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
            end = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
            data[at:at] = start * depth + end * rng.randint(0, depth)
        elif kind == "charset":
            for i in range(132, header_end - 14):
                if data[i : i + 4] == b"\x08\x00\x05\x00":  # SpecificCharacterSet
                    data[i + 8 : i + 18] = rng.choice(
                        [b"ISO_IR 192", b"ISO 2022 I", b"\xff\xfe\x00BOGUS!", b"ISO_IR 13 "]
                    )
                    break
        else:
            for i in range(at, min(at + 16, header_end)):
                data[i] = rng.randrange(256)
    return bytes(data)


def test_mutated_headers_never_escape_per_file_handling_never_leak_and_are_never_packed_unchecked(tmp_path):
    rng = random.Random(SEED)
    originals = {name: planted_file(name) for name in SOURCES}
    batches = []
    for n in range(EXAMPLES):
        folder = tmp_path / f"batch{n}"  # one mutant per batch: its garbage values are its own
        folder.mkdir()
        name = rng.choice(sorted(originals))
        (folder / f"m{n:05d}").write_bytes(mutate(originals[name], rng))
        if folder not in batches:
            batches.append(folder)
    values = list(PLANTED.values()) + ["FUZZDOE", "FUZZJANE", "FUZZREFDOC"]
    packed_total = errors_total = 0
    for folder in batches:
        headers = extract_headers(folder, [], RECIPE.profile, RECIPE.burned_in)  # must not raise
        good = [f for f in headers["files"] if "error" not in f and "skipped" not in f and "quarantine" not in f]
        ctx = Context(
            {"patient_id": "PFUZZ", "accession": "AFUZZ", "jitter": 7}, 7, uid_remapper(Keyed(b"f" * 64), "2.25.")
        )
        leak = LeakCheck(headers["phi"])
        result = pack_study(
            folder, [], good, RECIPE, ctx, leak, tmp_path / f"{folder.name}.tar.gz", tmp_path / "scratch", 1
        )  # must not raise
        texts = [f["error"] for f in headers["files"] if "error" in f] + [
            r["error"] for r in result.files if "error" in r
        ]
        errors_total += len(texts)
        for text in texts:
            for value in values:
                assert value not in text, text
        if result.packed:
            check = LeakCheck(values)
            with tarfile.open(tmp_path / f"{folder.name}.tar.gz") as tar:
                for member in tar.getmembers():
                    assert check.hits(tar.extractfile(member).read()) == 0, member.name
        packed_total += result.packed
    assert packed_total > 0 and errors_total > 0  # the fuzzing reached both outcomes
