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
