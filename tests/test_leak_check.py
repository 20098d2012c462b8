"""The leak check: what counts as a hit in written bytes."""

from __future__ import annotations

from sendit_luigi.deidentify import LeakCheck


def test_a_planted_value_is_found():
    assert LeakCheck(["DOE^JOHN"]).hits(b"\x00\x10PN\x08\x00DOE^JOHN") == 1


def test_a_name_part_inside_free_text_is_found():
    assert LeakCheck(["DOE"]).hits(b"CT HEAD FOR DOE ") == 1


def test_a_short_id_inside_a_longer_token_is_not_a_hit():
    check = LeakCheck(["12345", "RIS"])
    assert check.hits(b"2.25.998123457777 SIEMENS_RIS") == 0
    assert check.hits(b"2.25.9981 12345 ") == 1


def test_values_too_short_or_allowed_are_not_searched():
    check = LeakCheck(["M", "20200101", "20200102"], allowed=["20200102"])
    assert check.hits(b"M 20200102") == 0
    assert check.hits(b"20200101") == 1


def test_pixel_bytes_are_searched_only_for_long_values():
    check = LeakCheck(["ABC", "LONGNAME^PATIENT"])
    data = b"HEADER" + b" ABC " + b" LONGNAME^PATIENT " + b"TAIL"
    assert check.hits(data, pixel=(6, len(data) - 4)) == 1
    assert check.hits(data) == 2


def test_latin1_encoded_names_are_found():
    assert LeakCheck(["MÜLLER^JÖRG"]).hits("MÜLLER^JÖRG".encode("latin-1")) == 1


def pack_one(tmp_path, ds):
    """Stage 1 and stage 3 on a batch folder holding ``ds``; return the pack result and the tarball's bytes."""
    import gzip

    from conftest import recipe_for

    from sendit_luigi.deidentify import Context, pack_study, uid_remapper
    from sendit_luigi.headers import extract_headers
    from sendit_luigi.workdir import Keyed

    folder = tmp_path / "batch"
    folder.mkdir()
    ds.save_as(folder / "file", enforce_file_format=True)
    recipe = recipe_for()
    headers = extract_headers(folder, [], recipe.profile)
    ctx = Context(
        {"patient_id": "PCODE", "accession": "ACODE", "jitter": 3}, 3, uid_remapper(Keyed(b"l" * 64), "2.25.")
    )
    result = pack_study(
        folder,
        [],
        headers["files"],
        recipe,
        ctx,
        LeakCheck(headers["phi"]),
        tmp_path / "out.tar.gz",
        tmp_path / "scratch",
    )
    out = tmp_path / "out.tar.gz"
    return result, gzip.decompress(out.read_bytes()) if out.exists() else b""


def ct(**values):
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_phi_in_the_preamble_never_reaches_the_output(tmp_path):
    ds = ct(PatientName="PHIPRE^DOE")
    ds.preamble = b"II*\x00 PHIPREAMBLE^DOE MRN 12345678 ".ljust(128, b"\x00")  # a TIFF header with a name
    result, plain = pack_one(tmp_path, ds)
    assert result.packed == 1, result.files
    assert b"PHIPREAMBLE" not in plain and b"12345678" not in plain


def test_a_value_only_the_leak_check_knows_stops_the_file(tmp_path):
    """The patient's name, copied by a modality into an attribute the profile keeps (Manufacturer)."""
    result, plain = pack_one(tmp_path, ct(PatientName="PHILEAK^DOE", Manufacturer="PHILEAK"))
    assert result.packed == 0
    assert result.files[0]["error"].startswith("leak check failed: 1 original identifying value")
    assert b"PHILEAK" not in plain
