"""The header values every file of a study shares, for the study's metadata row.

Taken from the de-identified datasets only, so the row holds nothing the
recipe removed.
"""

from __future__ import annotations

from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

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
            self.items = {tag_for_keyword(k): _comparable(ds.get_item(k)) for k in self.summary}
            return
        for tag, first in list(self.items.items()):
            item = ds.get_item(tag)
            if item is None or _comparable(item) != first:
                del self.items[tag]
                self.summary.pop(keyword_for_tag(tag), None)


def _comparable(item: Any) -> Any:
    if isinstance(item, pydicom.dataelem.RawDataElement):
        return ("raw", item.VR, bytes(item.value or b"").rstrip(b" \0"))
    return ("value", str(item.value))
