"""The leak check: what must not survive, taken from the profile's table, and the byte scan.

``identifying_values`` collects, from an original file, the value of every
element that the profile (with the options in force) removes, empties,
replaces or shifts, at every depth, of every VR: text as it stands in the
file, person names also by their parts, binary values of a searchable size.
Stage 1 collects them for the whole batch; stage 3 adds those of the very file
it writes. ``LeakCheck`` then scans every written byte for all of them at once,
and ``LeakCheck.clean`` takes them out of the descriptors the profile keeps.
"""

from __future__ import annotations

import copy
import io
import mmap
import re
from collections.abc import Iterable
from typing import Any

import ahocorasick_rs
import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ..errors import FileProblem
from .profile import BINARY_PATTERN_BYTES, BINARY_VRS, Profile
from .recipe import shift_date
from .walk import datasets, element_vr

Buffer = bytes | memoryview | mmap.mmap  # a written file, in memory or mapped

MIN_PATTERN = 3  # shorter values ("M", "1") are not identifying on their own
PIXEL_MIN_PATTERN = 8  # inside pixel bytes, shorter strings match by chance
PIXEL_DATA = Tag(0x7FE00010)
META_READ_LIMIT = 64 * 1024  # the file meta group is a few hundred bytes


def identifying_values(ds: Dataset, profile: Profile, after_pixels_only: bool = False) -> set[str]:
    """The values in ``ds`` (and its file meta) that must not appear in the output.

    Raw bytes are taken as latin-1 text, which maps bytes 1:1: those are the
    bytes a leak would copy. Private elements are skipped (they are removed,
    or kept on purpose by ``[deid] keep_private_creators``). With
    ``after_pixels_only``, only the top-level elements after the pixel data:
    the part of a file that stage 1, which stops before the pixels, did not parse.
    """
    found: set[str] = set()
    identifying = profile.identifying
    if after_pixels_only:
        for tag, raw in ds._dict.items():
            vr = raw.VR or element_vr(raw)
            if tag > PIXEL_DATA and vr != "SQ" and not tag.is_private and identifying(tag, vr):
                found.update(_values(raw, vr))
        return {v for v in found if len(v.strip()) >= MIN_PATTERN}
    sources = [ds] + ([ds.file_meta] if getattr(ds, "file_meta", None) is not None else [])
    for source in sources:
        for d, _depth, _path in datasets(source):
            for tag, raw in d._dict.items():
                vr = raw.VR or element_vr(raw)
                if vr != "SQ" and not (tag >> 16) & 1 and identifying(tag, vr):
                    found.update(_values(raw, vr))
    return {v for v in found if len(v.strip()) >= MIN_PATTERN}


def _values(raw: Any, vr: str) -> list[str]:
    """An identifying element's values, with a person name's parts and a date-time's date."""
    out = []
    for text in _texts(raw, vr):
        out.append(text)
        if vr == "PN":
            out += [p.strip() for p in text.replace("=", "^").split("^") if p.strip()]
        elif vr == "DT":
            out.append(text[:8])
    return out


def _texts(elem: Any, vr: str) -> list[str]:
    """An element's values as text: raw bytes as latin-1, decoded values as str."""
    value = elem.value
    if value is None:
        return []
    if vr in BINARY_VRS:
        data = bytes(value) if isinstance(value, (bytes, bytearray)) else b""
        low, high = BINARY_PATTERN_BYTES
        return [data.decode("latin-1")] if low <= len(data) <= high and data.strip(b"\0 ") else []
    if isinstance(value, bytes):
        if vr not in (
            "AE",
            "AS",
            "CS",
            "DA",
            "DS",
            "DT",
            "IS",
            "LO",
            "LT",
            "PN",
            "SH",
            "ST",
            "TM",
            "UC",
            "UI",
            "UR",
            "UT",
        ):
            return []  # a binary number: too short to search for without matching by chance
        parts = value.decode("latin-1").split("\\")
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    return [p.strip(" \x00") for p in parts if p.strip(" \x00")]


class LeakCheck:
    """Scans written bytes for a batch's original identifying values.

    All values are searched at once (Aho-Corasick, ``ahocorasick_rs``), so the
    cost is one pass over the bytes however many values the batch has.

    A hit counts only where the value stands as a whole token (the bytes
    before and after it are not letters, digits or '_'), so a 5-digit id inside
    a 39-digit remapped UID is not a hit, while ``DOE`` in ``CT HEAD DOE`` is.
    Pixel bytes are scanned only for values of 8 or more characters.
    """

    @classmethod
    def for_study(cls, phi: Iterable[str], jitter_days: int) -> LeakCheck:
        """The check for one study: its identifying values, except an original date that equals one
        of its dates as shifted by ``jitter_days`` (there, the value is the shift's, not a leak)."""
        phi = list(phi)
        return cls(phi, allowed={shift_date(v, jitter_days, "DA") for v in phi if len(v) == 8 and v.isdigit()})

    def __init__(self, values: Iterable[str], allowed: Iterable[str] = ()):
        allowed = set(allowed)
        self.allowed = allowed
        self.values = sorted({v.strip() for v in values if len(v.strip()) >= MIN_PATTERN} - allowed)
        patterns = set()
        for value in self.values:
            for encoding in ("utf-8", "latin-1"):
                try:
                    patterns.add(value.encode(encoding))
                except UnicodeEncodeError:
                    pass
        self.patterns = sorted(patterns)
        self.long_patterns = [p for p in self.patterns if len(p) >= PIXEL_MIN_PATTERN]
        self._all = ahocorasick_rs.BytesAhoCorasick(self.patterns) if self.patterns else None
        self._long = ahocorasick_rs.BytesAhoCorasick(self.long_patterns) if self.long_patterns else None
        self._text = ahocorasick_rs.AhoCorasick(self.values) if self.values else None
        self._known = frozenset(self.values) | frozenset(allowed)
        self._extra: LeakCheck | None = None

    def with_values(self, more: Iterable[str]) -> LeakCheck:
        """This check plus ``more`` values (a file's own): itself when they add nothing.

        The batch's automaton is kept; only the few values it lacks get one of their own.
        """
        known = self._known
        extra = {v for v in (m.strip() for m in more) if len(v) >= MIN_PATTERN and v not in known}
        if not extra:
            return self
        combined = copy.copy(self)
        combined._extra = LeakCheck(extra, self.allowed)
        return combined

    def hits(self, buf: Buffer, pixel: tuple[int, int] | None = None) -> int:
        """How many identifying values occur in ``buf`` (a count, never the values)."""
        view = memoryview(buf)
        regions = [(0, len(buf), self._all, self.patterns)]
        if pixel is not None:
            start, end = pixel
            regions = [
                (0, start, self._all, self.patterns),
                (start, end, self._long, self.long_patterns),
                (end, len(buf), self._all, self.patterns),
            ]
        found: set[bytes] = set()
        for start, end, automaton, patterns in regions:
            if automaton is None or end <= start:
                continue
            for index, a, b in automaton.find_matches_as_indexes(view[start:end], overlapping=True):
                pattern = patterns[index]
                if pattern not in found and _is_token(buf, start + a, start + b, pattern):
                    found.add(pattern)
        view.release()
        return len(found) + (self._extra.hits(buf, pixel) if self._extra is not None else 0)

    def clean(self, text: str) -> str:
        """``text`` with every identifying value that stands in it as a whole token taken out."""
        if self._extra is not None:
            text = self._extra.clean(text)
        if self._text is None or not text:
            return text
        spans = [
            (a, b)
            for index, a, b in self._text.find_matches_as_indexes(text, overlapping=True)
            if _is_text_token(text, a, b)
        ]
        if not spans:
            return text
        keep = [True] * len(text)
        for a, b in spans:
            keep[a:b] = [False] * (b - a)
        return " ".join("".join(c for c, k in zip(text, keep, strict=True) if k).split())


def _is_word(byte: int) -> bool:
    """Letters, digits and '_' (DICOM code strings join words with it)."""
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122 or byte == 95


def _is_token(buf: Buffer, at: int, end: int, pattern: bytes) -> bool:
    if _UID_LIKE.fullmatch(pattern):  # a UID is one token: 1.2.3 inside 1.2.3.4 is another UID
        return (at == 0 or buf[at - 1] not in _UID_BYTES) and (end >= len(buf) or buf[end] not in _UID_BYTES)
    before_ok = at == 0 or not (_is_word(buf[at - 1]) and _is_word(pattern[0]))
    after_ok = end >= len(buf) or not (_is_word(buf[end]) and _is_word(pattern[-1]))
    return before_ok and after_ok


_UID_LIKE = re.compile(rb"[0-9]+(\.[0-9]+)+")
_UID_BYTES = frozenset(b"0123456789.")


def _is_text_token(text: str, at: int, end: int) -> bool:
    def word(c: str) -> bool:
        return c.isalnum() or c == "_"

    before_ok = at == 0 or not (word(text[at - 1]) and word(text[at]))
    after_ok = end >= len(text) or not (word(text[end]) and word(text[end - 1]))
    return before_ok and after_ok


def pixel_region(buf: Buffer, ds: Dataset) -> tuple[int, int] | None:
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


def check_written(buf: Buffer, ds: Dataset, leak: LeakCheck) -> None:
    """Check written bytes: raise ``FileProblem`` unless they are valid DICOM and clean.

    The file meta is read back (preamble, DICM marker, group 0002) and must
    name the new instance, and the preamble must be zeros; then every byte is
    scanned for the batch's identifying values.
    """
    try:
        head = io.BytesIO(bytes(buf[:META_READ_LIMIT]))
        pydicom.filereader.read_preamble(head, False)  # 128 bytes + "DICM", or it raises
        meta = pydicom.filereader._read_file_meta_info(head)
        good = meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    except Exception:  # noqa: BLE001 - any failure means the output is unusable
        good = False
    if not good:
        raise FileProblem("the written file does not read back as DICOM; it was not packed")
    if bytes(buf[:128]).strip(b"\0"):
        raise FileProblem("the written file's preamble is not empty; it was not packed")
    hits = leak.hits(buf, pixel_region(buf, ds))
    if hits:
        raise FileProblem(
            f"leak check failed: {hits} original identifying value(s) still in the written file; it was not packed"
        )
