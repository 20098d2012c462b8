"""The work directory: private folders, the secret key, and atomic checkpoint files.

Everything under the work directory may hold PHI (original headers, the
folder-to-key mapping, the lookup table), so folders are created 0700 and files
0600. Every file is written as Luigi's atomic ``LocalTarget`` writes one: the
bytes go to a temporary name and are renamed into place, so a kill at any
moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as a folder only the owner can read."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as sorted, indented JSON with mode 0600."""
    write_bytes(path, (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode())


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` (replacing it) with mode 0600."""
    with atomic_writer(path) as fh:
        fh.write(data)


@contextmanager
def atomic_writer(path: Path, verify: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the block finishes without error.

    As Luigi's atomic ``LocalTarget`` writer does: the bytes go to ``<path>-luigi-tmp-N``,
    which is renamed over ``path`` on success and deleted on error. Unlike it, the temporary
    file is created 0600 (never readable by others, not even for a moment), and its folder
    is made only when missing (a try, not a ``makedirs`` before every file: at 100,000 batches the
    checkpoints are the cost).
    ``verify``, if given, reads the finished temporary file and raises if it is not whole;
    then nothing is renamed.
    """
    tmp = f"{path}-luigi-tmp-{random.randrange(10_000_000_000):09d}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, PRIVATE_FILE)
    except FileNotFoundError:  # its folder is missing
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        fd = os.open(tmp, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)  # whatever the umask
    fh = os.fdopen(fd, "wb")
    fcntl.flock(fd, fcntl.LOCK_SH)  # "being written": the sweep leaves it alone (released on close)
    try:
        yield fh
        fh.flush()
        if verify is not None:
            verify(Path(tmp))
        fh.close()
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            fh.close()
        with suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def sweep_temporaries(folder: Path, of: tuple[str, ...] = ("*",)) -> int:
    """Delete the ``<name>-luigi-tmp-*`` files a killed run left in ``folder``; return how many.

    ``of`` names the files whose temporaries go (patterns); the default, every one.
    A temporary file whose writer is still at work (it holds a lock on it, see
    ``atomic_writer``) is left alone, whichever process that writer is.
    """
    count = 0
    for leftover in (p for name in of for p in folder.glob(f"{name}-luigi-tmp-*")):
        try:
            fd = os.open(leftover, os.O_RDONLY)
        except FileNotFoundError:  # its writer just finished or gave up
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer's
        else:
            leftover.unlink(missing_ok=True)
            count += 1
        finally:
            os.close(fd)
    return count


_run_lock: int | None = None


def lock_work_dir(work_dir: Path) -> None:
    """Hold ``<work_dir>/run.lock`` for the life of this process (and the task processes it forks).

    Raises ``WorkDirBusy`` when another process holds it. Only runs without a
    central scheduler take it: with luigid, the scheduler shares the work out.
    """
    global _run_lock
    if _run_lock is not None:  # taken already (or inherited by a forked task process)
        return
    private_dir(work_dir)
    fd = os.open(work_dir / "run.lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkDirBusy(
            "another run is using this work folder with --local-scheduler; wait for it to end, or run "
            "both against luigid (a central scheduler), which shares the work between them"
        ) from None
    _run_lock = fd  # the file stays empty: a rerun that does nothing changes nothing


class WorkDirBusy(RuntimeError):
    """Another ``--local-scheduler`` run holds the work folder."""


def space_shortfall(folder: Path, needed_bytes: int, disk: str, floor_gb: float) -> str:
    """Why writing ``needed_bytes`` into ``folder`` would leave its disk under ``floor_gb`` free; "" if not.

    ``floor_gb`` is ``[sendit] min_free_gb``; 0 turns the check off.
    """
    if floor_gb <= 0:
        return ""
    free = shutil.disk_usage(folder).free
    if free - needed_bytes >= floor_gb * 1e9:
        return ""
    return (
        f"needs about {size_text(needed_bytes)} on {disk} and would leave {size_text(free - needed_bytes)} "
        f"of {size_text(free)} free, under [sendit] min_free_gb = {floor_gb:g}"
    )


def size_text(size: float) -> str:
    """Bytes as GB, or as MB below a GB (a small batch needs "0.8 MB", not "0.00 GB")."""
    return f"{size / 1e9:.2f} GB" if abs(size) >= 1e9 else f"{size / 1e6:.1f} MB"


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_json_or_none(path: Path) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def load_secret(path: Path) -> bytes:
    """Return the HMAC key at ``path``, creating it (0600) on first use.

    Several worker processes may start at once: the key is written to a
    temporary file and hard-linked into place, so exactly one creation wins and
    everybody reads that one.
    """
    try:
        return _parse_secret(path)
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    write_once(path, secrets.token_hex(32) + "\n")
    return _parse_secret(path)


def write_once(path: Path, text: str) -> bool:
    """Create ``path`` (0600) holding ``text``, unless it exists; True if this call created it.

    The text goes to a temporary file that is hard-linked into place, so the file
    is whole when it appears, and of several writers at once exactly one wins.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _parse_secret(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < 32:
        raise ValueError(f"secret key file {path} is too short; delete it only if no ids were issued yet")
    return text.encode()


class Keyed:
    """Keyed hashes (HMAC-SHA256) derived from the project secret.

    Each use gets its own ``purpose`` prefix so that, say, a patient id and an
    accession number with the same text never give the same code.
    """

    def __init__(self, secret: bytes):
        self._secret = secret

    def digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def hex(self, purpose: str, value: str, length: int) -> str:
        return self.digest(purpose, value).hex()[:length]

    def code(self, purpose: str, value: str, prefix: str, length: int = 11) -> str:
        """An uppercase base32 code such as ``P7K2M...``: safe in any DICOM string VR."""
        text = base64.b32encode(self.digest(purpose, value)).decode().rstrip("=")
        return prefix + text[:length]

    def number(self, purpose: str, value: str) -> int:
        return int.from_bytes(self.digest(purpose, value)[:16], "big")
