"""Stage 3's loop: each file read, checked, de-identified, written, leak-checked, then packed.

A tarball is whole or absent. Each file is first made in memory (a scratch
file for very large ones) and checked; only a file that passed goes into the
tar stream, and a write error there fails the whole tarball (it never becomes
one file's error). Before the tarball is renamed into place it is read back in
full: every member, the gzip checksum, and the member list.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from isal.igzip import IGzipFile  # ISA-L gzip: ~5x zlib's speed, same format
from pydicom.dataset import Dataset

from .. import stops
from ..errors import FileProblem, RecipeError, file_error
from ..inputs import IN_MEMORY_LIMIT, open_input, parse_dicom
from ..workdir import atomic_writer
from .leakcheck import PIXEL_DATA, LeakCheck, check_written, identifying_values
from .pixels import check_pixel_data
from .recipe import Context, Recipe
from .summary import SharedHeader

WORK_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class InputChanged(Exception):
    """An input file is not the one stage 1 read (other size or bytes): the batch must be read again."""


class TarballBroken(Exception):
    """The tarball did not read back whole; it was not renamed into place."""


@dataclass
class PackResult:
    """What stage 3 did for one batch."""

    files: list[dict]
    packed: int
    series: set[str]
    header: dict[str, str]
    bytes_out: int


@dataclass
class _Written:
    """One checked output file: in memory, or in the scratch file for very large ones."""

    name: str
    size: int
    data: memoryview | None = None
    scratch: Path | None = None
    cleaned: bool = False


def pack_study(
    folder: Path,
    roots: list[Path],
    files: list[dict],
    recipe: Recipe,
    ctx: Context,
    leak: LeakCheck,
    tarball: Path,
    scratch: Path,
    compress_level: int = 1,
    progress: Callable[[int, int, int], None] | None = None,
) -> PackResult:
    """De-identify ``files`` (headers-checkpoint entries) of ``folder`` into ``tarball``.

    A file that fails any step gets an ``error`` in its record (our words) and
    is not packed. The tarball appears (atomically) only if at least one file
    was packed and it reads back whole. Its bytes depend only on the inputs:
    members are in the checkpoint's order, and times and owners are fixed.
    Raises ``InputChanged`` when a file differs from what stage 1 read, and
    ``OSError`` or ``TarballBroken`` when the tarball cannot be written whole.
    """
    ctx = replace(ctx, clean=leak.clean)  # descriptors are cleaned of the values the leak check looks for
    records: list[dict] = []
    series: set[str] = set()
    names: list[str] = []
    shared = SharedHeader()
    try:
        with (
            atomic_writer(tarball, verify=lambda tmp: verify_tarball(tmp, names)) as raw,
            IGzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compress_level) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for entry in files:
                record = {"file": entry["index"]}
                records.append(record)
                written = None
                try:
                    written, ds = _one_file(folder / entry["path"], roots, entry, recipe, ctx, leak, scratch)
                    if written.name in names:
                        raise FileProblem("another file in this batch has the same SOPInstanceUID; skipped")
                except (InputChanged, RecipeError):
                    raise
                except OSError as exc:
                    if exc.errno in WORK_DISK_ERRORS:
                        raise  # the work disk, not this file: the whole tarball fails
                    record["error"] = file_error(exc)
                except Exception as exc:  # noqa: BLE001 - whatever it is, it is this file's error
                    record["error"] = file_error(exc)
                if "error" not in record and written is not None:
                    _add(tar, written)  # outside the per-file handling: a write error fails the tarball
                    names.append(written.name)
                    series.add(str(ds.SeriesInstanceUID))
                    shared.add(ds)
                    record["output"], record["size_out"] = written.name, written.size
                    if written.cleaned:
                        record["pixels_cleaned"] = True
                if progress is not None:
                    progress(len(records), len(files), sum("error" in r for r in records))
                if names:
                    stops.reach("tarball half written")  # and its progress told
            if not names:
                raise _NothingPacked
    except _NothingPacked:
        pass
    finally:
        scratch.unlink(missing_ok=True)
    return PackResult(
        files=records,
        packed=len(names),
        series=series,
        header=shared.summary or {},
        bytes_out=tarball.stat().st_size if names else 0,
    )


def _one_file(
    path: Path, roots: list[Path], entry: dict, recipe: Recipe, ctx: Context, leak: LeakCheck, scratch: Path
) -> tuple[_Written, Dataset]:
    """Read, check, de-identify, write and leak-check one file; raise on any problem."""
    data, fingerprint = open_input(path, roots)
    expected = entry.get("fingerprint") or {}
    if (fingerprint.size, fingerprint.blake3) != (expected.get("size"), expected.get("blake3")):
        raise InputChanged
    ds = parse_dicom(data, stop_before_pixels=False)
    if isinstance(data, Path):  # a large file is parsed from disk after hashing: it must not have changed since
        info = os.stat(data)
        if (info.st_size, info.st_mtime_ns) != (fingerprint.size, fingerprint.mtime_ns):
            raise InputChanged
    check_pixel_data(ds)
    extra: tuple[tuple[str, str, str], ...] = ()
    if entry.get("clean_pixels"):  # the Clean Pixel Data option, for a file with known regions
        recipe.clean_pixels(ds)
        extra = (recipe.profile.clean_pixels_code(),)
    # The fingerprint proves these are the bytes whose values stage 1 collected; it parsed up to the
    # pixel data, so this very file's values after them are added here.
    check = leak.with_values(identifying_values(ds, recipe.profile, after_pixels_only=True))
    recipe.apply(ds, ctx if check is leak else replace(ctx, clean=check.clean), extra)
    name = f"{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    pixels = ds.get_item(PIXEL_DATA)
    in_memory = pixels is None or len(pixels.value or b"") < IN_MEMORY_LIMIT
    out = io.BytesIO()
    try:
        ds.save_as(out if in_memory else scratch, enforce_file_format=True)
    except OSError:
        raise  # the work disk: not this file's fault
    except Exception as exc:  # noqa: BLE001 - pydicom refused the de-identified dataset
        raise FileProblem(file_error(exc, doing="could not be written as DICOM")) from None
    if in_memory:
        view = out.getbuffer()
        check_written(view, ds, check)
        return _Written(name, len(view), data=view, cleaned=bool(extra)), ds
    with open(scratch, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        check_written(buf, ds, check)
    return _Written(name, scratch.stat().st_size, scratch=scratch, cleaned=bool(extra)), ds


def _add(tar: tarfile.TarFile, written: _Written) -> None:
    info = tarfile.TarInfo(written.name)
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
    info.size = written.size
    if written.data is not None:
        tar.addfile(info, io.BytesIO(written.data))
        written.data.release()
        return
    assert written.scratch is not None
    with open(written.scratch, "rb") as fh:
        tar.addfile(info, fh)


def verify_tarball(path: Path, names: list[str]) -> None:
    """Read the whole tarball back (every byte, the gzip checksum); raise unless it holds exactly ``names``."""
    seen = []
    try:
        with (
            open(path, "rb") as raw,
            IGzipFile(fileobj=raw, mode="rb") as gz,
            tarfile.open(fileobj=gz, mode="r|") as tar,
        ):
            for member in tar:
                seen.append(member.name)
                fh = tar.extractfile(member)
                if fh is not None:
                    while fh.read(1 << 20):
                        pass
            # to the end of the gzip stream, whatever tar made of a damaged header: its CRC is checked there
            while gz.read(1 << 20):
                pass
    except (OSError, EOFError, tarfile.TarError, ValueError) as exc:
        raise TarballBroken(f"the study tarball does not read back ({type(exc).__name__}); not kept") from None
    if seen != names:
        raise TarballBroken(f"the study tarball holds {len(seen)} files, {len(names)} were packed; not kept")


class _NothingPacked(Exception):
    pass
