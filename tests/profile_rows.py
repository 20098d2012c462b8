"""Table E.1-1 rows as test material: a concrete tag, a VR and a valid marked value for each row.

Read from the same table file the pipeline uses. ``allowed(row)`` says which
outcomes the standard permits for a row with the default options in force;
``outcome`` classifies what the recipe did to a planted element.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from conftest import default_profile
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

PROFILE = default_profile()
TABLE = json.loads(PROFILE.table_path.read_text())
TEXT_VRS = {"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"}
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
NUMBER_VRS = {"US": 4321, "SS": -4321, "UL": 87654321, "SL": -87654321, "FL": 1.25, "FD": 2.5, "SV": -1, "UV": 1}
CONTAINER = 0x00082218  # AnatomicRegionSequence: not in the table, so it is kept and its items de-identified
# A person's name that stands in descriptors: cleaning must take it out.
NAME = "MRKPERSON"


@dataclass(frozen=True)
class Planted:
    """One row, made concrete."""

    index: int
    row: dict
    tag: int
    vr: str
    keyword: str

    @property
    def id(self) -> str:
        return f"{self.row['tag']}-{self.keyword or self.row['name'].replace(' ', '')}"

    @property
    def mark(self) -> str:
        return f"MRK{self.index:04d}X"

    @property
    def needle(self) -> str | None:
        """What to search output bytes for: this row's planted value, where it is distinctive."""
        if self.vr in TEXT_VRS | BINARY_VRS | {"PN", "UR"}:
            return self.mark
        if self.vr in ("DA", "DT", "DS", "IS", "UI"):
            return str(self.value())[:8] if self.vr in ("DA", "DT") else str(self.value())
        return None  # numbers in binary, ages, times, sequences: not distinctive as bytes

    def value(self):
        """A valid value of the row's VR that carries this row's mark where the VR can."""
        i, vr = self.index, self.vr
        if vr == "PN":
            return f"{self.mark}^MRKG{i:04d}X"
        if vr in TEXT_VRS:
            return f"CT HEAD {NAME} {self.mark}" if self.row["options"].get("clean_descriptors") else self.mark
        if vr == "UR":
            return f"urn:{self.mark}"
        if vr in ("DA", "DT"):
            day = dt.date(1900, 1, 1) + dt.timedelta(days=100 * i)
            return day.strftime("%Y%m%d") + ("101010" if vr == "DT" else "")
        if vr == "TM":
            return "101010"
        if vr == "DS":
            return f"7{i:04d}.1357"
        if vr == "IS":
            return f"7{i:04d}1"
        if vr == "AS":
            return "042Y"
        if vr == "UI":
            return f"1.2.826.0.1.3680043.99.{i}"
        if vr == "AT":
            return 0x00100010
        if vr in BINARY_VRS:
            return f"MARKBYTES{self.mark}".encode()
        if vr in NUMBER_VRS:
            return NUMBER_VRS[vr]
        if vr == "SQ":
            inner = Dataset()
            inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "MRKCODE", "99MRK", "MRKMEANING"
            inner.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.98.{i}"
            return Sequence([inner])
        raise AssertionError(f"no marked value for VR {vr}")

    def plant(self, ds: Dataset) -> None:
        """Add the element to ``ds`` with its marked value."""
        ds.add_new(self.tag, self.vr, self.value())


def concrete_tag(text: str) -> int:
    """A tag for a row: repeating groups (60xx,3000; 50xx,xxxx) become their first group."""
    return int(text.upper().replace("XXXX", "3000").replace("XX", "00"), 16)


def planted_rows() -> list[Planted]:
    out = []
    for index, row in enumerate(TABLE["rules"]):
        if row["tag"] == "PRIVATE":
            continue
        tag = concrete_tag(row["tag"])
        if dictionary_has_tag(tag):
            vr = dictionary_VR(tag).split(" or ")[0]
        else:  # newer than pydicom's dictionary: written as UN (or SQ), as an old reader would see it
            vr = "SQ" if row["name"].endswith("Sequence") else "UN"
        out.append(Planted(index, row, tag, vr, keyword_for_tag(tag)))
    return out


def allowed(p: Planted, replaced_by_recipe: set[str]) -> set[str]:
    """The outcomes the standard permits for this row with the default options in force.

    The codes: X removed, Z empty, D a dummy (for a sequence: emptied; for a UID:
    a new one), U a new consistent UID (for a sequence: kept, UIDs inside new),
    K kept as it was, SHIFT moved by the date shift, CLEAN kept without the
    identifying text, PSEUDONYM the recipe's coded id.
    """
    if p.tag >> 16 == 0:
        return {"X"}  # Command Set elements are dropped before writing (dcmwrite refuses them)
    options = {o: c for o, c in p.row["options"].items() if o in PROFILE.options}
    if "K" in options.values():
        return {"K"}
    if options.get("retain_longitudinal_modified_dates") == "C" and p.vr in ("DA", "DT", "TM"):
        return {"K"} if p.vr == "TM" else {"SHIFT"}
    if "C" in options.values() and p.keyword in PROFILE.clean_keywords and p.vr in TEXT_VRS:
        return {"CLEAN"}
    codes = set(p.row["basic"].replace("*", "").split("/"))
    if p.keyword in replaced_by_recipe:
        codes.add("PSEUDONYM")
    return codes


def outcome(p: Planted, before, after, shift_days: int, pseudonyms: set[str]) -> set[str]:
    """What happened to the element, as the set of codes it satisfies."""
    if after is None:
        return {"X"}
    value = after.value
    if p.vr == "SQ" or after.VR == "SQ":
        if not value:
            return {"Z", "D"}
        # Kept: its items follow the table row by row (K), which replaces the UIDs inside (U).
        inner = value[0]
        remapped = inner.get("ReferencedSOPInstanceUID") not in (None, before.value[0].ReferencedSOPInstanceUID)
        return {"K", "U"} if remapped and inner.get("CodeValue") == "MRKCODE" else set()
    if value in (None, "", b""):
        return {"Z"}
    if value == before.value:
        return {"K"}
    if str(value) in pseudonyms:
        return {"PSEUDONYM", "D"}
    if p.vr == "UI":
        return {"U", "D"} if str(value).startswith("2.25.") else set()
    if p.vr in ("DA", "DT") and _shifted(str(before.value), shift_days) == str(value):
        return {"SHIFT"}
    if (
        p.vr in TEXT_VRS
        and isinstance(before.value, str)
        and NAME in before.value
        and NAME not in str(value)
        and p.mark in str(value)
    ):
        return {"CLEAN"}
    return {"D"}


def _shifted(value: str, days: int) -> str:
    day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + value[8:]
