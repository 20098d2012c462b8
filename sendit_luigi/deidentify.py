"""Stage 3: apply the recipe with the batch's identifiers, check every file, pack the study.

Speed comes from doing deid's work once instead of once per file:

* the recipe is parsed once per process (``deid.config.DeidRecipe``);
* deid's own field matching (``expand_field_expression``) runs once per *header
  layout* (the same tags and sequence shapes, as in every slice of a series)
  and the result is kept as a plan: a list of element paths and actions;
* each file is then read once with pixels, the plan applied with plain pydicom
  calls, and written once.

Safety does not depend on the plan being right: every written file is re-read
and its bytes scanned for the batch's original identifying values before it
goes into the tarball (``LeakCheck``).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import mmap
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ahocorasick_rs
import pydicom
from deid.config import DeidRecipe
from deid.dicom import fields as deid_fields
from deid.dicom.pixels.detect import has_burned_pixels
from isal.igzip import IGzipFile  # ISA-L gzip: ~5x zlib's speed, same format
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
)

from .errors import RecipeError, describe
from .headers import MIN_PATTERN, STANDARD_UID_ROOT, element_vr, read_dicom
from .workdir import Keyed, atomic_writer

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
PIXEL_DATA = Tag(0x7FE00010)
PIXEL_MIN_PATTERN = 8  # inside pixel bytes, shorter strings match by chance
PROGRAM_VERSION_NAME = "SENDIT_LUIGI_1"

Path_ = tuple  # (tag, item index, tag, item index, ..., tag)


@dataclass
class Context:
    """Everything the recipe's ``var:`` and ``func:`` values may use for one batch."""

    variables: dict[str, str | int]
    jitter_days: int
    remap_uid: Callable[[str], str]


def uid_remapper(keyed: Keyed, root: str) -> Callable[[str], str]:
    """A function giving each non-standard UID a keyed-hash UID under ``root``.

    The same original always maps to the same new UID (in every batch and on
    every rerun), so references between instances, series and studies survive.
    """
    root = root if root.endswith(".") else root + "."

    @lru_cache(maxsize=65536)
    def remap(uid: str) -> str:
        uid = uid.strip()
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


class Recipe:
    """A deid recipe, parsed once, applied through cached per-layout plans."""

    def __init__(
        self,
        path: Path,
        keep_private_creators: frozenset[str] = frozenset(),
        quarantine_filters: tuple[str, ...] = (),
    ):
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist ([sendit] recipe)")
        try:
            self.deid = DeidRecipe(str(path), base=False)
        except SystemExit as exc:  # deid calls sys.exit on a malformed line
            raise RecipeError(f"recipe {path} could not be parsed (deid exited with {exc.code})") from None
        if self.deid.has_values_lists() or self.deid.has_fields_lists():
            raise RecipeError(f"recipe {path}: %values and %fields lists are not supported; list fields directly")
        self.path = path
        self.actions = self.deid.get_actions() or []
        self.additions = [a for a in self.actions if a["action"] == "ADD"]
        for action in self.actions:
            value = action.get("value") or ""
            if value.startswith("func:") and value[5:] not in FUNCTIONS:
                raise RecipeError(f"recipe {path}: unknown function {value}; known: {', '.join(FUNCTIONS)}")
            if action["action"] == "ADD" and tag_for_keyword(action["field"]) is None:
                raise RecipeError(f"recipe {path}: ADD needs a DICOM keyword, not {action['field']}")
        self.keep_private_creators = keep_private_creators
        self._plans: dict[tuple, list] = {}
        groups = self.deid.get_filters() or {}
        unknown = [name for name in quarantine_filters if name not in groups]
        if unknown:
            raise RecipeError(f"recipe {path} has no %filter {', '.join(unknown)} ([deid] quarantine_filters)")
        self._filter = copy.copy(self.deid)
        self._filter.deid = dict(self.deid.deid, filter={k: groups[k] for k in quarantine_filters})

    def quarantine_reason(self, ds: Dataset) -> str:
        """Why deid's header filter flags ``ds`` as likely to show PHI in its pixels ('' if clean)."""
        if not self._filter.deid["filter"]:
            return ""
        result = has_burned_pixels(ds, deid=self._filter)
        if not result["flagged"]:
            return ""
        return "; ".join(f"{r['group']}: {' '.join(r['reason'].split())}" for r in result["results"])

    def variables(self) -> set[str]:
        return {a["value"][4:] for a in self.actions if (a.get("value") or "").startswith("var:")}

    # -- planning ---------------------------------------------------------

    def plan(self, ds: Dataset) -> list[tuple[Path_, str, str | None]]:
        """The ops for ``ds``; private elements are removed on the way (see ``prepare``)."""
        key = prepare(ds, self.keep_private_creators)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(ds)
        return plan

    def _compile(self, ds: Dataset) -> list[tuple[Path_, str, str | None]]:
        contenders = deid_fields.get_fields_with_lookup(ds, skip=SKIP, expand_sequences=True)
        deid_fields._get_fields_inner.cache_clear()  # deid caches whole datasets forever
        chosen: dict[str, tuple[int, str, str | None]] = {}
        for action in self.actions:
            name = action["action"]
            if name == "ADD":
                continue
            matches = deid_fields.expand_field_expression(action["field"], ds, contenders=contenders)
            for uid, fld in matches.items():
                if fld.is_filemeta:
                    continue  # the file meta is rebuilt, not edited
                rank = PRIORITY[name]
                if uid not in chosen or rank >= chosen[uid][0]:
                    chosen[uid] = (rank, name, action.get("value"))
        ops = []
        gone: list[Path_] = []
        for uid, (_rank, name, value) in sorted(chosen.items(), key=lambda kv: kv[0].count("__")):
            if name == "KEEP":
                continue
            path = parse_uid(uid)
            if any(path[: len(g)] == g for g in gone):
                continue  # inside a sequence that is already removed or blanked
            if name in ("REMOVE", "BLANK"):
                gone.append(path)
            ops.append((path, name, value))
        return ops

    # -- applying ---------------------------------------------------------

    def apply(self, ds: Dataset, ctx: Context) -> None:
        """De-identify ``ds`` in place."""
        for path, action, value in self.plan(ds):
            parent = _parent(ds, path)
            tag = path[-1]
            if parent is None or tag not in parent:
                continue
            elem = parent[tag]
            if action == "REMOVE":
                del parent[tag]
            elif action == "BLANK":
                elem.value = Sequence() if elem.VR == "SQ" else None
            elif action == "REPLACE":
                elem.value = self._value(value, elem, ctx)
            elif action == "JITTER":
                _jitter(elem, ctx)
        for action in self.additions:
            keyword = action["field"]
            new = self._value(action.get("value"), None, ctx)
            if keyword in ds:
                ds[keyword].value = new
            else:
                tag = tag_for_keyword(keyword)
                ds.add_new(tag, dictionary_VR(tag), new)
        ds.preamble = b"\0" * 128  # a preamble may hold a TIFF header with PHI
        rebuild_file_meta(ds)

    @staticmethod
    def _value(value: str | None, elem, ctx: Context):
        value = value or ""
        if value.startswith("var:"):
            name = value[4:]
            if name not in ctx.variables:
                raise RecipeError(f"recipe needs var:{name}, which the identifiers backend did not provide")
            return ctx.variables[name]
        if value.startswith("func:"):
            return FUNCTIONS[value[5:]](elem, ctx)
        return value


def _remap_uid_function(elem, ctx: Context):
    if elem is None or elem.value in (None, ""):
        return elem.value if elem is not None else ""
    if elem.VM > 1:
        return [ctx.remap_uid(str(v)) for v in elem.value]
    return ctx.remap_uid(str(elem.value))


FUNCTIONS: dict[str, Callable] = {"remap_uid": _remap_uid_function}


def _jitter(elem, ctx: Context) -> None:
    if elem.VR not in ("DA", "DT") or elem.value in (None, ""):
        return
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    shifted = [shift_date(str(v), ctx.jitter_days, elem.VR) for v in values]
    elem.value = shifted if len(shifted) > 1 else shifted[0]


def parse_uid(uid: str) -> Path_:
    """deid's field uid ``(0008,1115)__0__(0020,000E)`` as (Tag, 0, Tag)."""
    out: list = []
    for part in uid.split("__"):
        if part.startswith("("):
            group, elem = part.strip("()").split(",")
            out.append(Tag(int(group, 16), int(elem, 16)))
        else:
            out.append(int(part))
    return tuple(out)


def _parent(ds: Dataset, path: Path_) -> Dataset | None:
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
    """Remove private elements (except allowed blocks) and return the header layout key, in one walk.

    The key is what deid's field matching depends on: tags, VRs, sequence
    shapes and private creators. Elements are looked at without decoding
    their values, except sequences (which must be opened) and private creators.
    """
    out: list = []
    stack: list = [ds]
    while stack:
        d = stack.pop()
        if d is None:
            out.append(None)
            continue
        # Dataset._dict holds the raw elements: no per-element decoding.
        for tag, raw in list(d._dict.items()):
            if tag.is_private and (not keep_creators or not _allowed(d, tag, keep_creators)):
                del d[tag]
                continue
            vr = element_vr(raw)
            if vr == "SQ":
                seq = d[tag].value
                out.append((tag, "SQ", len(seq)))
                for item in reversed(seq):
                    stack.append(None)
                    stack.append(item)
            elif tag.is_private and tag.is_private_creator:
                out.append((tag, vr, d[tag].value))
            else:
                out.append((tag, vr))
    return tuple(out)


def remove_private(ds: Dataset, keep_creators: frozenset[str] = frozenset()) -> None:
    """Remove private elements at every depth, except blocks of allowed creators."""
    prepare(ds, keep_creators)


def _allowed(d: Dataset, tag, keep_creators: frozenset[str]) -> bool:
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


class LeakCheck:
    """Scans written bytes for a batch's original identifying values.

    All values are searched at once (Aho-Corasick, ``ahocorasick_rs``), so the
    cost is one pass over the bytes however many values the batch has (a batch
    of 1,000 files has over 1,000 original UIDs).

    A hit counts only where the value stands as a whole token (the bytes
    before and after it are not letters, digits or '_'), so a 5-digit id inside
    a 39-digit remapped UID is not a hit, while ``DOE`` in ``CT HEAD DOE`` is.
    Pixel bytes are scanned only for values of 8 or more characters.
    """

    def __init__(self, values: Iterable[str], allowed: Iterable[str] = ()):
        allowed = set(allowed)
        patterns = set()
        for value in values:
            value = value.strip()
            if len(value) >= MIN_PATTERN and value not in allowed:
                for encoding in ("utf-8", "latin-1"):
                    try:
                        patterns.add(value.encode(encoding))
                    except UnicodeEncodeError:
                        pass
        self.patterns = sorted(patterns)
        self.long_patterns = [p for p in self.patterns if len(p) >= PIXEL_MIN_PATTERN]
        self._all = ahocorasick_rs.BytesAhoCorasick(self.patterns) if self.patterns else None
        self._long = ahocorasick_rs.BytesAhoCorasick(self.long_patterns) if self.long_patterns else None

    def hits(self, buf, pixel: tuple[int, int] | None = None) -> int:
        """How many identifying values occur in ``buf`` (a count, never the values)."""
        view = memoryview(buf)
        regions = [(0, len(buf), self._all, self.patterns)]
        if pixel is not None:
            start, end = pixel
            regions = [(0, start, self._all, self.patterns), (start, end, self._long, self.long_patterns),
                       (end, len(buf), self._all, self.patterns)]
        found: set[bytes] = set()
        for start, end, automaton, patterns in regions:
            if automaton is None or end <= start:
                continue
            for index, a, b in automaton.find_matches_as_indexes(view[start:end], overlapping=True):
                pattern = patterns[index]
                if pattern not in found and _is_token(buf, start + a, start + b, pattern):
                    found.add(pattern)
        view.release()
        return len(found)


def _is_word(byte: int) -> bool:
    """Letters, digits and '_' (DICOM code strings join words with it)."""
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122 or byte == 95


def _is_token(buf, at: int, end: int, pattern: bytes) -> bool:
    before_ok = at == 0 or not (_is_word(buf[at - 1]) and _is_word(pattern[0]))
    after_ok = end >= len(buf) or not (_is_word(buf[end]) and _is_word(pattern[-1]))
    return before_ok and after_ok


def pixel_region(buf, ds: Dataset) -> tuple[int, int] | None:
    """Where the pixel data value sits in the written bytes ``buf``, if it can be told exactly."""
    if "PixelData" not in ds:
        return None
    n = len(ds.PixelData)
    size = len(buf)
    tag_bytes = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
    for start in (size - n, size - n - 8):  # defined length; encapsulated + delimiter
        for header in (12, 8):  # explicit VR OB/OW; implicit VR
            at = start - header
            if at >= 0 and bytes(buf[at : at + 4]) in tag_bytes:
                return start, start + n
    return None


@dataclass
class PackResult:
    """What stage 3 did for one batch."""

    files: list[dict]
    packed: int
    series: set[str]
    header: dict[str, str]
    bytes_out: int


def check_written(buf, ds: Dataset, leak: LeakCheck) -> str:
    """Check written bytes; return an error text, or '' when they are valid and clean.

    The file meta is read back (preamble, DICM marker, group 0002) and must
    name the new instance; then every byte is scanned for the batch's
    identifying values.
    """
    try:
        head = io.BytesIO(bytes(buf[:META_READ_LIMIT]))
        pydicom.filereader.read_preamble(head, False)  # 128 bytes + "DICM", or it raises
        meta = pydicom.filereader._read_file_meta_info(head)
        if meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID:
            raise ValueError("MediaStorageSOPInstanceUID does not name the instance")
    except Exception as exc:  # noqa: BLE001 - any failure means the output is unusable
        return f"the written file does not read back as DICOM ({describe(exc)})"
    hits = leak.hits(buf, pixel_region(buf, ds))
    if hits:
        return f"leak check failed: {hits} original identifying value(s) still in the written file; it was not packed"
    return ""


META_READ_LIMIT = 64 * 1024  # the file meta group is a few hundred bytes
IN_MEMORY_LIMIT = 256 * 1024 * 1024  # larger files are written to a scratch file and mapped


SHARED_SKIP_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"}


def header_summary(ds: Dataset) -> dict[str, str]:
    """Top-level, short, non-binary header values of a de-identified dataset."""
    out = {}
    for elem in ds:
        if elem.VR in SHARED_SKIP_VRS or not elem.keyword or elem.tag.group == 0x7FE0:
            continue
        text = str(elem.value)
        if len(text) <= 256:
            out[elem.keyword] = text
    return out


class SharedHeader:
    """The header values every file of a study has in common, compared without decoding.

    The first file is decoded once; later files are compared element by element
    on their raw bytes (or values, where the recipe changed them).
    """

    def __init__(self) -> None:
        self.summary: dict[str, str] | None = None
        self.items: dict = {}

    def add(self, ds: Dataset) -> None:
        if self.summary is None:
            self.summary = header_summary(ds)
            self.items = {tag_for_keyword(k): _comparable(ds.get_item(tag_for_keyword(k))) for k in self.summary}
            return
        for tag, first in list(self.items.items()):
            item = ds.get_item(tag)
            if item is None or _comparable(item) != first:
                del self.items[tag]
                self.summary.pop(keyword_for_tag(tag), None)


def _comparable(item):
    if isinstance(item, pydicom.dataelem.RawDataElement):
        return ("raw", item.VR, bytes(item.value or b"").rstrip(b" \0"))
    return ("value", str(item.value))


def pack_study(
    folder: Path,
    files: list[dict],
    recipe: Recipe,
    ctx: Context,
    leak: LeakCheck,
    tarball: Path,
    scratch: Path,
    compress_level: int = 1,
    progress: Callable[[int, int, int], None] | None = None,
) -> PackResult:
    """De-identify ``files`` of ``folder`` into the tarball at ``tarball``.

    Each file is read (with pixels), de-identified, written to ``scratch``,
    re-read and leak-checked, then streamed into the tarball, so memory holds one
    file at a time. A file that fails any step gets an ``error`` in its record
    and is not packed. The tarball appears (atomically) only if at least one file
    was packed. Its bytes depend only on the inputs: members are sorted, and
    times and owners are fixed. ``progress`` is told (files done, files in
    all, errors so far) after each file.
    """
    records = []
    series: set[str] = set()
    names: set[str] = set()
    shared = SharedHeader()
    packed = 0
    try:
        with atomic_writer(tarball) as raw:
            with IGzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compress_level) as gz:
                with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for entry in files:
                        record = {"path": entry["path"]}
                        records.append(record)
                        try:
                            ds = read_dicom(folder / entry["path"], stop_before_pixels=False)
                            recipe.apply(ds, ctx)
                            name = f"{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
                            if name in names:
                                raise ValueError("another file in this batch has the same SOPInstanceUID; skipped")
                            size = _write_checked(ds, leak, tar, name, scratch)
                            names.add(name)
                            series.add(str(ds.SeriesInstanceUID))
                            shared.add(ds)
                            record["output"] = name
                            record["size_out"] = size
                            packed += 1
                        except RecipeError:
                            raise
                        except _Unclean as exc:
                            record["error"] = str(exc)
                        except Exception as exc:  # noqa: BLE001 - a bad file is that file's error
                            record["error"] = describe(exc)
                        if progress is not None:
                            progress(len(records), len(files), len(records) - packed)
            if not packed:
                raise _NothingPacked
    except _NothingPacked:
        pass
    finally:
        scratch.unlink(missing_ok=True)
    return PackResult(
        files=records,
        packed=packed,
        series=series,
        header=shared.summary or {},
        bytes_out=tarball.stat().st_size if packed else 0,
    )


def _write_checked(ds: Dataset, leak: LeakCheck, tar: tarfile.TarFile, name: str, scratch: Path) -> int:
    """Write ``ds``, check the bytes, and only then add them to ``tar``; return the size.

    Files up to ``IN_MEMORY_LIMIT`` are written to memory; larger ones to
    ``scratch``, which is memory-mapped for the check and streamed into the tar.
    """
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
    pixels = ds.get_item(PIXEL_DATA)
    if pixels is None or len(pixels.value or b"") < IN_MEMORY_LIMIT:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        data = out.getbuffer()
        problem = check_written(data, ds, leak)
        size = len(data)
        data.release()
        if problem:
            raise _Unclean(problem)
        info.size = size
        out.seek(0)
        tar.addfile(info, out)
        return size
    ds.save_as(scratch, enforce_file_format=True)
    with open(scratch, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        problem = check_written(buf, ds, leak)
    if problem:
        raise _Unclean(problem)
    info.size = scratch.stat().st_size
    with open(scratch, "rb") as fh:
        tar.addfile(info, fh)
    return info.size


class _Unclean(Exception):
    """A written file failed its check; the message says why (never the values)."""


class _NothingPacked(Exception):
    pass

