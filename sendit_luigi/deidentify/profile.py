"""The DICOM PS3.15 Basic Application Level Confidentiality Profile, as data, and its options.

Table E.1-1 lists every attribute the profile acts on, with an action code
and, per option, the action that replaces it when that option is in force::

    X  remove                      Z  zero length (or a dummy)
    D  a dummy value of its VR     U  a consistent replacement UID
    K  keep (option columns)       C  clean (option columns)

The table is a data file (``tables/ps315_<edition>.json``, see
``tables/SOURCE.md``); nothing here names an attribute. This module turns
the table plus the options in force into one decision per tag, an ``Op``:

========  ===================================================================
REMOVE    X, and what a combined code resolves to X
BLANK     Z: zero length; a sequence becomes empty
DUMMY     D: a fixed dummy of the element's VR (``DUMMIES``); a UID gets a
          consistent replacement; a sequence becomes empty
REMAP     U: a consistent keyed-hash UID; a sequence (X/Z/U*) is kept and
          the UIDs inside it are remapped by their own rows
KEEP      a standard attribute not in the table, or an option says K; a
          sequence is kept and its items are de-identified by the same table
          (a public tag that neither the table nor pydicom's dictionary knows
          is no standard attribute: REMOVE)
SHIFT     an option says C for a date: DA and DT values move by the
          patient's date shift; TM values are kept (a whole-day shift leaves
          times of day as they are)
CLEAN     an option says C for a descriptor named in ``[deid]
          clean_descriptors``: kept, with every identifying value of the
          batch taken out of it
========  ===================================================================

Combined codes mean "the first, unless the IOD needs the next". Without the
IOD module tables the choice is fixed (``COMBINED``) so that it never keeps
more than the alternatives would: X/Z, Z/D and X/Z/D become Z (the element
stays, empty), X/D becomes D, X/Z/U* becomes U (references stay, with new
UIDs). Private attributes (the table's ``PRIVATE`` row) are removed by the
recipe step, except blocks of the creators in ``[deid] keep_private_creators``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.sr.codedict import codes


class Op(StrEnum):
    REMOVE = "remove"
    BLANK = "blank"
    DUMMY = "dummy"
    REMAP = "remap"
    KEEP = "keep"
    SHIFT = "shift"
    CLEAN = "clean"


BASIC = {"X": Op.REMOVE, "Z": Op.BLANK, "D": Op.DUMMY, "U": Op.REMAP, "K": Op.KEEP}
COMBINED = {"X/Z": Op.BLANK, "Z/D": Op.BLANK, "X/Z/D": Op.BLANK, "X/D": Op.DUMMY, "X/Z/U*": Op.REMAP}

# Option key (the table's column) -> its code in PS3.16 CID 7050 (pydicom's copy).
OPTION_CODES = {
    "retain_safe_private": "RetainSafePrivateOption",
    "retain_uids": "RetainUidsOption",
    "retain_device_identity": "RetainDeviceIdentityOption",
    "retain_institution_identity": "RetainInstitutionIdentityOption",
    "retain_patient_characteristics": "RetainPatientCharacteristicsOption",
    "retain_longitudinal_full_dates": "RetainLongitudinalTemporalInformationFullDatesOption",
    "retain_longitudinal_modified_dates": "RetainLongitudinalTemporalInformationModifiedDatesOption",
    "clean_descriptors": "CleanDescriptorsOption",
    "clean_structured_content": "CleanStructuredContentOption",
    "clean_graphics": "CleanGraphicsOption",
    "clean_pixel_data": "CleanPixelDataOption",
}
# Options this project carries out. The others are refused when turned on (the profile's action applies).
SUPPORTED = frozenset(
    {
        "retain_uids",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_patient_characteristics",
        "retain_longitudinal_full_dates",
        "retain_longitudinal_modified_dates",
        "clean_descriptors",
        "retain_safe_private",
        "clean_pixel_data",
    }
)
PER_FILE = ("clean_pixel_data",)  # declared only in the files it changed (see clean_pixels_code)
DATE_OPTIONS = ("retain_longitudinal_modified_dates",)
DATE_VRS = ("DA", "DT")
TIME_VRS = ("TM",)
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
# Binary values are searched for only in this size range: shorter ones match by chance,
# longer ones (documents, signatures) are whole blobs that the profile removes anyway.
BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
BINARY_PATTERN_BYTES = (8, 1024)


class ProfileError(ValueError):
    """The table or the options cannot be used (a configuration problem)."""


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1."""

    tag: str  # 8 hex digits, or a mask such as 60xx3000, or PRIVATE
    name: str
    basic: str
    options: dict[str, str]

    def matches(self, tag: int) -> bool:
        text = f"{tag:08X}"
        return all(m in ("X", t) for m, t in zip(self.tag.upper(), text, strict=True))


@dataclass(frozen=True)
class Profile:
    """Table E.1-1 with the options in force: one ``Op`` per tag."""

    table_path: Path
    options: frozenset[str] = frozenset()
    clean_keywords: frozenset[str] = frozenset()
    rows: dict[int, Row] = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        data = _read_table(self.table_path)
        unknown = sorted(self.options - set(data["option_keys"]) - {"clean_pixel_data"})
        if unknown:
            raise ProfileError(f"unknown profile option(s): {', '.join(unknown)}")
        unsupported = sorted(self.options - SUPPORTED)
        if unsupported:
            raise ProfileError(
                f"profile option(s) not carried out by this version: {', '.join(unsupported)}; "
                "turn them off and the profile's action applies"
            )
        if {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"} <= self.options:
            raise ProfileError(
                "retain_longitudinal_full_dates and retain_longitudinal_modified_dates exclude each other"
            )
        rows: dict[int, Row] = {}
        masks: list[Row] = []
        for raw in data["rules"]:
            row = Row(raw["tag"], raw["name"], raw["basic"], dict(raw["options"]))
            if row.basic not in BASIC and row.basic not in COMBINED:
                raise ProfileError(f"table row {row.tag} has an action this version does not know: {row.basic}")
            if row.tag == "PRIVATE":
                continue
            if "X" in row.tag.upper():
                masks.append(row)
            else:
                rows[int(row.tag, 16)] = row
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "_masks", tuple(masks))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_identifying", {})

    # -- what the table says --------------------------------------------------

    @property
    def edition(self) -> str:
        return str(_read_table(self.table_path)["source"]["edition"])

    def row(self, tag: int) -> Row | None:
        """The table's row for ``tag`` (repeating groups such as 60xx,3000 included), if any."""
        found = self.rows.get(tag)
        if found is not None:
            return found
        for row in self._masks:  # type: ignore[attr-defined]
            if row.matches(tag):
                return row
        return None

    def op(self, tag: int, vr: str) -> Op:
        """What to do with a (public) element: the row's action, as changed by the options in force."""
        key = (tag, vr)
        cache = self._cache  # type: ignore[attr-defined]
        if key not in cache:
            private = (tag >> 16) & 1  # odd groups: the recipe step keeps or removes them by creator
            cache[key] = Op.KEEP if private else self._resolve(self.row(tag), vr, keyword_for_tag(tag))
        return cache[key]

    def _resolve(self, row: Row | None, vr: str, keyword: str) -> Op:
        if row is None:
            # Not in the table: a standard attribute is kept; a public tag that no dictionary knows
            # is no standard attribute (a damaged file swallows its neighbours into one), so it goes.
            return Op.KEEP if keyword else Op.REMOVE
        in_force = {name: code for name, code in row.options.items() if name in self.options}
        if "K" in in_force.values():
            return Op.KEEP
        if any(in_force.get(name) == "C" for name in DATE_OPTIONS):
            if vr in DATE_VRS:
                return Op.SHIFT
            if vr in TIME_VRS:
                return Op.KEEP
        if "C" in in_force.values() and keyword in self.clean_keywords and (vr in TEXT_VRS or vr == "SQ"):
            return Op.CLEAN if vr != "SQ" else Op.KEEP
        return BASIC.get(row.basic) or COMBINED[row.basic]

    def identifying(self, tag: int, vr: str) -> bool:
        """Whether the element's original value must not appear in the output (the leak check's list).

        Every element the profile removes, empties, replaces or shifts, except
        descriptors (rows with a Clean Descriptors column): those are free text
        whose identifying parts are values of other elements, which are on the list;
        and times of day (TM), which the date option keeps elsewhere in the same file.
        """
        key = (tag, vr)
        cache = self._identifying  # type: ignore[attr-defined]
        if key not in cache:
            row = self.row(tag) if vr != "SQ" and vr not in TIME_VRS else None
            # no row: not in the table; a time of day alone names no one, and stands in kept attributes too
            cache[key] = row is not None and "clean_descriptors" not in row.options and self.op(tag, vr) is not Op.KEEP
        return cache[key]

    # -- saying what was done -------------------------------------------------

    def method_codes(self) -> list[tuple[str, str, str]]:
        """(code value, scheme, meaning) of the profile and of each option in force, from CID 7050."""
        names = ["BasicApplicationConfidentialityProfile"] + [
            OPTION_CODES[o] for o in sorted(self.options) if o in OPTION_CODES and o not in PER_FILE
        ]
        out = []
        for name in names:
            code = getattr(codes.cid7050, name)
            out.append((code.value, code.scheme_designator, code.meaning))
        return out

    @staticmethod
    def clean_pixels_code() -> tuple[str, str, str]:
        """CID 7050's Clean Pixel Data Option, for the files whose pixels were cleaned."""
        code = codes.cid7050.CleanPixelDataOption
        return (code.value, code.scheme_designator, code.meaning)

    def longitudinal(self) -> str:
        """LongitudinalTemporalInformationModified: what happened to dates."""
        if "retain_longitudinal_full_dates" in self.options:
            return "UNMODIFIED"
        if "retain_longitudinal_modified_dates" in self.options:
            return "MODIFIED"
        return "REMOVED"

    @cached_property
    def fingerprint(self) -> bytes:
        """The table's bytes and the options: part of the recipe hash."""
        parts = [
            self.table_path.read_bytes(),
            ",".join(sorted(self.options)).encode(),
            ",".join(sorted(self.clean_keywords)).encode(),
        ]
        return hashlib.sha256(b"\0".join(parts)).digest()


_TABLES: dict[Path, dict] = {}


def _read_table(path: Path) -> dict:
    if path not in _TABLES:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["rules"], data["option_keys"], data["source"]["edition"]  # noqa: B018 - the fields we need
        except FileNotFoundError:
            raise ProfileError("the profile table file does not exist ([deid] profile_table)") from None
        except (ValueError, KeyError, TypeError):
            raise ProfileError("the profile table file is not a PS3.15 table (rules, option_keys, source)") from None
        _TABLES[path] = data
    return _TABLES[path]
