"""Pixel data that is all there: a cut-off image is that file's error, never packed.

Native pixel data must hold Rows x Columns x SamplesPerPixel x BitsAllocated
x NumberOfFrames bits; encapsulated (compressed) pixel data must be a whole
fragment table with at least one fragment per frame. pydicom drops a pixel
data element that ends before its delimiter, so an image module (Rows) without
pixel data is a cut-off file too.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from ..errors import FileProblem

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def check_pixel_data(ds: Dataset) -> None:
    """Raise ``FileProblem`` when the pixel data is shorter than the header says, or broken."""
    present = [k for k in PIXEL_KEYWORDS if k in ds]
    if not present:
        if "Rows" in ds and "Columns" in ds:
            raise FileProblem("PixelData (7FE0,0010) is missing or cut off although the header describes an image")
        return
    if present != ["PixelData"]:
        return  # float pixel data: no compression, and no fixed bits per sample to check against
    value = ds.PixelData or b""
    frames = _int(ds, "NumberOfFrames", 1) or 1
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_encapsulated:
        try:
            fragments = sum(1 for _ in generate_fragments(value))
        except Exception:  # noqa: BLE001 - any parse failure is a broken fragment table
            raise FileProblem("PixelData (7FE0,0010) has a broken fragment table") from None
        if fragments < frames:
            raise FileProblem(f"PixelData (7FE0,0010) has {fragments} fragments for {frames} frames: cut off")
        return
    bits = _int(ds, "BitsAllocated", 0)
    rows, columns = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    if not (bits and rows and columns):
        raise FileProblem("PixelData (7FE0,0010) without Rows, Columns or BitsAllocated")
    samples = _int(ds, "SamplesPerPixel", 1) or 1
    expected = (rows * columns * samples * frames * bits + 7) // 8
    if len(value) < expected:
        raise FileProblem(
            f"PixelData (7FE0,0010) holds {len(value)} bytes; Rows x Columns x SamplesPerPixel x "
            f"BitsAllocated x NumberOfFrames need {expected}: cut off"
        )


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        return default
