"""Reading the input tree, safely: only regular files, only inside the input folders, only read.

Inputs are never written. A file is opened only if it is a regular file (a
FIFO would block, a device could be endless) and only if it, or what its link
points to, lies inside one of the input folders. Every read records the
file's size, modification time and a BLAKE3 hash of its bytes, so stage 3 can
tell that it packs exactly the file whose header stage 1 read.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import mmap
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
from blake3 import blake3  # a cryptographic hash at 2.5x SHA-256's speed
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import FileProblem

IN_MEMORY_LIMIT = 256 * 1024 * 1024  # larger outputs are written to a scratch file, not memory
MAP_ABOVE = 1024 * 1024  # larger inputs are memory-mapped, not copied


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of an input file."""

    size: int
    mtime_ns: int
    blake3: str

    def as_dict(self) -> dict:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "blake3": self.blake3}


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (resolved, links followed) lies in one of ``roots`` (resolved)."""
    real = os.path.realpath(path)
    return any(real == str(r) or real.startswith(str(r) + os.sep) for r in roots)


def walk_files(folder: Path) -> Iterator[Path]:
    """Every entry under ``folder`` that is not a folder, nested folders included, in a stable order.

    Links to folders are not followed. What each entry is (a regular file, a
    link leading elsewhere, a FIFO) is checked when it is opened.
    """

    def fail(exc: OSError) -> None:
        raise exc

    for root, dirs, files in os.walk(folder, onerror=fail):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def input_signature(folder: Path) -> str:
    """A digest of the folder's file list, sizes and modification times: it changes when the input does.

    An errored batch whose signature changed is read again by itself (``batches.retry_if_changed``).
    """
    digest = hashlib.sha256()
    try:
        for path in walk_files(folder):
            st = os.lstat(path)
            digest.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return "unreadable"
    return digest.hexdigest()[:32]


def open_input(path: Path, roots: list[Path]) -> tuple[bytes | Path, Fingerprint]:
    """What to parse for the input file at ``path`` and its fingerprint.

    Small files come back as their bytes (read once, for the hash and the
    parse); larger ones as the checked path, hashed through a memory map.
    Raises ``FileProblem`` for a link that leads outside the input folders and
    for anything that is not a regular file; ``OSError`` when it cannot be read.
    """
    if roots and not inside(path, roots):
        raise FileProblem("a link that leads outside the input folders; not read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("not a regular file (a FIFO, socket or device); not read")
        if info.st_size == 0:
            raise FileProblem("empty file (0 bytes)")
        if info.st_size <= MAP_ABOVE:
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            return data, Fingerprint(len(data), info.st_mtime_ns, blake3(data).hexdigest())
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            digest = blake3(mapped).hexdigest()
        return path, Fingerprint(info.st_size, info.st_mtime_ns, digest)
    finally:
        os.close(fd)


@functools.cache
def quiet_pydicom() -> None:
    """Keep header values out of logs and warnings: pydicom quotes them, and checks values as it decodes them.

    pydicom has only process-wide settings. They are set before the first dataset is parsed
    (every dataset this package handles comes through ``parse_dicom``), not when the package
    is imported: a program that imports it keeps its own pydicom settings until it reads a file through it.
    """
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def parse_dicom(source: bytes | Path, stop_before_pixels: bool = True) -> Dataset:
    """Parse DICOM bytes (or a checked file), also when they lack the 128-byte preamble and 'DICM' marker.

    Raises ``FileProblem`` for bytes that are not DICOM.
    """
    quiet_pydicom()

    def opened() -> io.BytesIO | Path:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    try:
        return pydicom.dcmread(opened(), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        pass
    # Old or raw files have no preamble; force=True reads anything, so accept the
    # result only if it looks like a DICOM instance.
    try:
        ds = pydicom.dcmread(opened(), stop_before_pixels=stop_before_pixels, force=True)
        if "SOPClassUID" in ds and "SOPInstanceUID" in ds and str(ds.SOPInstanceUID).strip():
            return ds
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM" here
        pass
    raise FileProblem("not a DICOM file (no DICM marker and no readable DICOM header)")


def read_dicom(path: Path, roots: list[Path], stop_before_pixels: bool = True) -> tuple[Dataset, Fingerprint]:
    """Open and parse one input file; see ``open_input`` and ``parse_dicom``."""
    data, fingerprint = open_input(path, roots)
    return parse_dicom(data, stop_before_pixels), fingerprint
