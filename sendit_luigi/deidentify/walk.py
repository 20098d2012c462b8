"""One walk over a dataset's raw elements, at every depth, with a bound on nesting.

Elements are looked at through ``Dataset._dict``, which holds them as read
(``RawDataElement``): no per-element decoding, which is most of pydicom's cost.
Only sequences are opened. Nesting deeper than ``MAX_DEPTH`` is a file error:
pydicom's reader and writer recurse once per level, and a few hundred levels
(a 99 KB file) once took a writer to 23 GB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ..errors import FileProblem

MAX_DEPTH = 32  # real objects rarely nest ten levels (SR content trees included)


def element_vr(raw: Any) -> str:
    """An element's VR without decoding its value (implicit-VR files: the dictionary's)."""
    if raw.VR:
        return raw.VR
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        return "UN"


ElementPath = tuple[int, ...]  # tag, item number, tag, ...: where an element is (the recipe's steps name these)


def datasets(ds: Dataset) -> Iterator[tuple[Dataset, int, ElementPath]]:
    """Yield ``(dataset, depth, path)`` for ``ds`` and every sequence item in it, parents first.

    ``path`` leads to the item: its sequence's path and the item's number (``()`` for ``ds``).
    The caller looks at each dataset's elements (``d._dict``, raw) when it is
    given; it may delete elements then, and a deleted sequence is not entered.
    Raises ``FileProblem`` past ``MAX_DEPTH``.
    """
    stack: list[tuple[Dataset, int, ElementPath]] = [(ds, 0, ())]
    while stack:
        d, depth, path = stack.pop()
        yield d, depth, path
        nested: list[tuple[Dataset, int, ElementPath]] = []
        for tag, raw in list(d._dict.items()):
            if raw.VR == "SQ" or (not raw.VR and element_vr(raw) == "SQ"):
                if depth + 1 > MAX_DEPTH:
                    raise FileProblem(f"sequences are nested more than {MAX_DEPTH} levels deep; not read further")
                nested.extend((item, depth + 1, (*path, tag, i)) for i, item in enumerate(d[tag].value))
        stack.extend(reversed(nested))


def elements(ds: Dataset) -> list[tuple[ElementPath, int, DataElement]]:
    """``(path, depth, element)`` for every element at every depth, decoded, in the file's order
    (a sequence's items right after it). Raises ``FileProblem`` past ``MAX_DEPTH``."""
    found = [((*path, elem.tag), depth, elem) for d, depth, path in datasets(ds) for elem in d]
    return sorted(found, key=lambda f: f[0])
