"""The compiled recipe: the profile's table, the recipe file's lines on top, and one plan per layout.

Two kinds of data decide what happens to each element:

* the **profile** (``profile.py``): DICOM PS3.15 Table E.1-1 with the options
  in force, for every attribute the standard names;
* the **recipe file** (deid format, ``recipes/sendit.dicom``): the project's
  own lines on top, such as putting the coded patient id into PatientID
  (a pseudonym is a valid Z/D value), and the ``%filter`` rules for quarantine.
  A recipe line may replace, remove or empty what the profile names, never
  keep it: ``KEEP`` of an attribute the profile acts on is refused.

Speed comes from deciding once per *header layout* (the same tags and
sequence shapes, as in every slice of a series): the decisions for a layout
are kept as a plan, a list of element paths and operations, and each file is
then changed with plain pydicom calls.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from deid.config import DeidRecipe
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_sequence
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..errors import FileProblem, RecipeError, file_error
from ..workdir import Keyed
from .profile import Op, Profile
from .walk import ElementPath, datasets, element_vr

# Strongest first: when several recipe lines hit one element, the strongest wins.
PRIORITY = {"KEEP": 6, "ADD": 5, "REPLACE": 4, "JITTER": 3, "REMOVE": 2, "BLANK": 1}
# Never matched by recipe lines: the pixels and what only describes them.
SKIP = (
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
)
STANDARD_UID_ROOT = "1.2.840.10008."
METHOD_CODES = Tag(0x00120064)  # DeidentificationMethodCodeSequence
PROGRAM_VERSION_NAME = "SENDIT_LUIGI_1"

# The profile's D (dummy) value for each VR; UIDs get a consistent replacement, sequences are emptied.
DUMMIES: dict[str, object] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), "ANONYMIZED"),
    "AS": "000D",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "UR": "urn:anonymized",
    **dict.fromkeys(("FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"), 0),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), b"\0\0"),
    "AT": 0,
}

Step = tuple[ElementPath, str, str | None]  # (path, operation, recipe value or None)


@dataclass
class Context:
    """What the recipe's values may use for one batch."""

    variables: dict[str, str | int]
    jitter_days: int
    remap_uid: Callable[[str], str]
    clean: Callable[[str], str] = field(default=lambda text: text)


def uid_remapper(keyed: Keyed, root: str) -> Callable[[str], str]:
    """A function giving each non-standard UID a keyed-hash UID under ``root``.

    The same original always maps to the same new UID (in every batch and on
    every rerun), so references between instances, series and studies survive.
    """
    root = root if root.endswith(".") else root + "."

    @lru_cache(maxsize=65536)
    def remap(uid: str) -> str:
        uid = uid.strip().rstrip("\0")
        if not uid or uid.startswith(STANDARD_UID_ROOT):
            return uid
        return (root + str(keyed.number("uid", uid)))[:64]

    return remap


def shift_date(value: str, days: int, vr: str) -> str:
    """Shift a DA or DT value by ``days``; return '' for values that are not full dates."""
    value = value.strip()
    if len(value) < 8 or not value[:8].isdigit():
        return ""
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return ""
    shifted = (day + dt.timedelta(days=days)).strftime("%Y%m%d")
    return shifted + value[8:] if vr == "DT" else shifted


def quiet_deid() -> None:
    """deid's own logger and warnings quote header values: nothing from it is shown, not even errors."""
    from deid.logger import bot

    bot.level = -10
    warnings.filterwarnings("ignore", module=r"deid(\..*)?")


class Recipe:
    """The profile plus a deid recipe file, applied through cached per-layout plans."""

    def __init__(
        self,
        path: Path,
        profile: Profile,
        keep_private_creators: frozenset[str] = frozenset(),
        quarantine_filters: tuple[str, ...] = (),
    ):
        if not path.is_file():
            raise RecipeError("the recipe file does not exist ([sendit] recipe)")
        quiet_deid()
        try:
            self.parsed = DeidRecipe(str(path), base=False)  # deid's reading of the file
        except SystemExit as exc:  # deid calls sys.exit on a malformed line
            raise RecipeError(f"the recipe could not be parsed (deid exited with {exc.code})") from None
        if self.parsed.has_values_lists() or self.parsed.has_fields_lists():
            raise RecipeError("recipe: %values and %fields lists are not supported; list fields directly")
        self.profile = profile
        self.name = path.name
        self.actions = [a for a in self.parsed.get_actions() or [] if a["action"] != "ADD"]
        self.additions = [a for a in self.parsed.get_actions() or [] if a["action"] == "ADD"]
        for action in self.actions + self.additions:
            value = action.get("value") or ""
            if value.startswith("func:") and value[5:] not in FUNCTIONS:
                raise RecipeError(f"recipe: unknown function {value}; known: {', '.join(FUNCTIONS)}")
            if action["action"] == "ADD" and tag_for_keyword(action["field"]) is None:
                raise RecipeError(f"recipe: ADD needs a DICOM keyword, not {action['field']}")
        self.keep_private_creators = keep_private_creators
        self._plans: dict[tuple, list[Step]] = {}
        groups = self.parsed.get_filters() or {}
        unknown = [name for name in quarantine_filters if name not in groups]
        if unknown:
            raise RecipeError(f"the recipe has no %filter {', '.join(unknown)} ([deid] quarantine_filters)")
        # the same recipe with only the filters in force (deid keeps a recipe's sections in its ``deid`` dict)
        self._filter = copy.copy(self.parsed)
        self._filter.deid = {**self.parsed.deid, "filter": {k: groups[k] for k in quarantine_filters}}
        self.hash = hashlib.sha256(
            path.read_bytes() + b"\0" + profile.fingerprint + b"\0" + ",".join(sorted(keep_private_creators)).encode()
        ).hexdigest()[:12]

    def method(self) -> str:
        """DeidentificationMethod: this program, the table's edition, the recipe and its hash (LO, <= 64)."""
        return f"sendit-luigi PS3.15-{self.profile.edition} {self.name[:20]} {self.hash}"[:64]

    def burned_in(self, ds: Dataset) -> tuple[str, bool]:
        """Why deid's header filters flag ``ds`` as likely to show PHI in its pixels ('' if not), and
        whether every flagging section names the regions to black out (``coordinates``)."""
        if not self._filter.deid["filter"]:
            return "", False
        from deid.dicom.pixels.detect import has_burned_pixels  # imports matplotlib: only when filters are on

        result = has_burned_pixels(ds, deid=self._filter)
        if not result["flagged"]:
            return "", False
        reason = "; ".join(f"{r['group']}: {' '.join(r['reason'].split())}" for r in result["results"])
        return reason, all(r.get("coordinates") for r in result["results"])

    def quarantine_reason(self, ds: Dataset) -> str:
        """Why deid's header filters flag ``ds`` ('' if they do not)."""
        return self.burned_in(ds)[0]

    def clean_pixels(self, ds: Dataset) -> None:
        """Black out the regions the flagging filters name: the Clean Pixel Data option (deid's cleaner)."""
        from deid.dicom.pixels.clean import clean_pixel_data
        from deid.dicom.pixels.detect import has_burned_pixels

        result = has_burned_pixels(ds, deid=self._filter)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.PixelData = clean_pixel_data(ds, result).tobytes()

    # -- planning ---------------------------------------------------------

    def plan(self, ds: Dataset) -> list[Step]:
        """The steps for ``ds``; private and command elements are removed on the way (see ``prepare``)."""
        key = prepare(ds, self.keep_private_creators)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(ds)
        return plan

    def _compile(self, ds: Dataset) -> list[Step]:
        # Imported here: ``deid.dicom`` imports matplotlib (0.3 s), which the operator commands never need.
        from deid.dicom import fields as deid_fields

        contenders = deid_fields.get_fields_with_lookup(ds, skip=SKIP, expand_sequences=True)
        deid_fields._get_fields_inner.cache_clear()  # deid caches whole datasets forever
        chosen: dict[str, tuple[int, str, str | None]] = {}
        for action in self.actions:
            matches = deid_fields.expand_field_expression(action["field"], ds, contenders=contenders)
            for uid, fld in matches.items():
                if fld.is_filemeta:
                    continue  # the file meta is rebuilt, not edited
                rank = PRIORITY[action["action"]]
                if uid not in chosen or rank >= chosen[uid][0]:
                    chosen[uid] = (rank, action["action"], action.get("value"))
        steps: list[Step] = []
        gone: list[ElementPath] = []
        for uid, fld in sorted(contenders.fields.items(), key=lambda kv: kv[0].count("__")):
            if fld.is_filemeta:
                continue
            path = parse_uid(uid)
            if any(path[: len(g)] == g for g in gone):
                continue  # inside a sequence that is already removed or emptied
            tag, vr = path[-1], fld.element.VR
            op = self.profile.op(tag, vr)
            if uid in chosen:
                _rank, name, value = chosen[uid]
                if name == "KEEP" and op is not Op.KEEP:
                    raise RecipeError(
                        f"the recipe keeps {fld.element.keyword or tag}, which the profile says to "
                        f"{op.value}; turn on a profile option in [deid] instead"
                    )
                if name != "KEEP":
                    steps.append((path, name, value))
                    if name in ("REMOVE", "BLANK"):
                        gone.append(path)
                    continue
            if op in (Op.KEEP, Op.REMAP) and vr == "SQ":
                continue  # kept; its items follow the table row by row
            if op is Op.KEEP:
                continue
            steps.append((path, op.value, None))
            if vr == "SQ" or op is Op.REMOVE:
                gone.append(path)
        return steps

    # -- applying ---------------------------------------------------------

    def apply(self, ds: Dataset, ctx: Context, extra_codes: tuple[tuple[str, str, str], ...] = ()) -> None:
        """De-identify ``ds`` in place, and record what was done in it (PS3.15 E.1.1)."""
        for path, action, value in self.plan(ds):
            parent = _parent(ds, path)
            tag = BaseTag(path[-1])
            if parent is None or tag not in parent:
                continue
            try:
                self._step(parent, tag, action, value, ctx)
            except RecipeError:
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed element: say which one, never its value
                raise FileProblem(file_error(exc, element=tag)) from None
        for action in self.additions:
            keyword = action["field"]
            new = self._value(action.get("value"), None, ctx)
            if keyword in ds:
                ds[keyword].value = new
            else:
                tag = Tag(keyword)  # the recipe's keywords were checked when it was loaded
                ds.add_new(tag, dictionary_VR(tag), new)
        ds.preamble = b"\0" * 128  # a preamble may hold a TIFF header with PHI
        rebuild_file_meta(ds)
        self.record_method(ds, extra_codes)

    def _step(self, parent: Dataset, tag: BaseTag, action: str, value: str | None, ctx: Context) -> None:
        """One step of the plan on one element (removing, emptying or a dummy do not decode it)."""
        if action in ("REMOVE", Op.REMOVE.value):
            del parent[tag]
            return
        if action in ("BLANK", Op.BLANK.value, Op.DUMMY.value):
            vr = element_vr(parent.get_item(tag)).split(" or ")[0]  # implicit VR: the dictionary's first
            if action == Op.DUMMY.value and vr == "UI":
                _remap(parent[tag], ctx)  # a dummy UID is a consistent new one: it needs the original
                return
            if action == Op.DUMMY.value and vr != "SQ":
                new = DUMMIES.get(vr, b"\0\0")
            else:
                new = Sequence() if vr == "SQ" else None
            parent[tag] = DataElement(tag, vr, new)
            return
        elem = parent[tag]
        if action == Op.REMAP.value:
            _remap(elem, ctx)
        elif action in ("JITTER", Op.SHIFT.value):
            _jitter(elem, ctx)
        elif action == Op.CLEAN.value:
            _clean(elem, ctx)
        elif action == "REPLACE":
            elem.value = self._value(value, elem, ctx)

    def record_method(self, ds: Dataset, extra_codes: tuple[tuple[str, str, str], ...] = ()) -> None:
        """PatientIdentityRemoved, DeidentificationMethod(CodeSequence) and what happened to dates.

        The code sequence is the same in every file: it is encoded once per
        transfer syntax and added as raw bytes (writing its items anew was a
        twentieth of stage 3's time).
        """
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self.method()
        ds.LongitudinalTemporalInformationModified = self.profile.longitudinal()
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_little_endian:
            implicit = syntax.is_implicit_VR
            value = self._encoded_codes(extra_codes, implicit)
            ds._dict[METHOD_CODES] = RawDataElement(
                METHOD_CODES, None if implicit else "SQ", len(value), value, 0, implicit, True
            )
        else:
            ds.DeidentificationMethodCodeSequence = self._codes(extra_codes)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one recipe per process
    def _codes(self, extra_codes: tuple[tuple[str, str, str], ...]) -> Sequence:
        items = []
        for value, scheme, meaning in [*self.profile.method_codes(), *extra_codes]:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
            items.append(item)
        return Sequence(items)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one recipe per process
    def _encoded_codes(self, extra_codes: tuple[tuple[str, str, str], ...], implicit: bool) -> bytes:
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, implicit
        write_sequence(out, DataElement(METHOD_CODES, "SQ", self._codes(extra_codes)), ["iso8859"])
        return out.getvalue()

    @staticmethod
    def _value(value: str | None, elem: DataElement | None, ctx: Context) -> Any:
        value = value or ""
        if value.startswith("var:"):
            name = value[4:]
            if name not in ctx.variables:
                raise RecipeError(f"the recipe needs var:{name}, which the identifiers backend did not provide")
            return ctx.variables[name]
        if value.startswith("func:"):
            return FUNCTIONS[value[5:]](elem, ctx)
        return value


def _values(elem: DataElement) -> list:
    return [] if elem.value in (None, "") else (list(elem.value) if elem.VM > 1 else [elem.value])


def _set(elem: DataElement, values: list) -> None:
    elem.value = values if len(values) > 1 else (values[0] if values else None)


def _remap(elem: DataElement, ctx: Context) -> None:
    if elem.VR == "UI":
        _set(elem, [ctx.remap_uid(str(v)) for v in _values(elem)])
    else:  # a U row whose element is not a UID (a broken file): nothing of it may stay
        elem.value = None


def _jitter(elem: DataElement, ctx: Context) -> None:
    if elem.VR not in ("DA", "DT"):
        elem.value = None
        return
    _set(elem, [shift_date(str(v), ctx.jitter_days, elem.VR) for v in _values(elem)])


def _clean(elem: DataElement, ctx: Context) -> None:
    _set(elem, [ctx.clean(str(v)) for v in _values(elem)])


def _remap_uid_function(elem: DataElement, ctx: Context) -> str | list[str]:
    if elem is None or elem.value in (None, ""):
        return elem.value if elem is not None else ""
    values = [ctx.remap_uid(str(v)) for v in _values(elem)]
    return values if len(values) > 1 else values[0]


FUNCTIONS: dict[str, Callable] = {"remap_uid": _remap_uid_function}


def parse_uid(uid: str) -> ElementPath:
    """deid's field uid ``(0008,1115)__0__(0020,000E)`` as (Tag, 0, Tag)."""
    out: list = []
    for part in uid.split("__"):
        if part.startswith("("):
            group, elem = part.strip("()").split(",")
            out.append(Tag(int(group, 16), int(elem, 16)))
        else:
            out.append(int(part))
    return tuple(out)


def _parent(ds: Dataset, path: ElementPath) -> Dataset | None:
    parent = ds
    for i in range(0, len(path) - 1, 2):
        tag, index = path[i], path[i + 1]
        if tag not in parent:
            return None
        items = parent[tag].value
        if index >= len(items):
            return None
        parent = items[index]
    return parent


def prepare(ds: Dataset, keep_creators: frozenset[str] = frozenset()) -> tuple:
    """Remove private elements (except allowed blocks) and Command Set elements (group 0000);
    return the header layout key, in one walk.

    The key is what the plan depends on: tags, VRs, sequence shapes and
    private creators. ``dcmwrite`` refuses group 0000 in a file, and the
    profile removes its one identifying element (AffectedSOPInstanceUID) anyway.
    """
    out: list = []
    for d, depth, _path in datasets(ds):
        out.append(depth)  # where each item starts
        for tag, raw in list(d._dict.items()):
            group = tag >> 16
            private = group & 1
            if not group or (private and (not keep_creators or not _allowed(d, tag, keep_creators))):
                del d[tag]
                continue
            vr = raw.VR or element_vr(raw)
            if vr == "SQ":
                out.append((tag, "SQ", len(d[tag].value)))
            elif private and tag.is_private_creator:
                out.append((tag, vr, d[tag].value))
            else:
                out.append((tag, vr))
    return tuple(out)


def _allowed(d: Dataset, tag: BaseTag, keep_creators: frozenset[str]) -> bool:
    creator_tag = tag if tag.is_private_creator else Tag(tag.group, tag.element >> 8)
    creator = d.get(creator_tag)
    return creator is not None and str(creator.value).strip() in keep_creators


def rebuild_file_meta(ds: Dataset) -> None:
    """A fresh, valid file meta: same SOP class and transfer syntax, new instance UID."""
    old = getattr(ds, "file_meta", None)
    syntax = old.get("TransferSyntaxUID") if old is not None else None
    if not syntax:
        implicit, little = ds.original_encoding
        implicit = True if implicit is None else implicit
        little = True if little is None else little
        syntax = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PROGRAM_VERSION_NAME
    ds.file_meta = meta
