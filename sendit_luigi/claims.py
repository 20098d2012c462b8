"""One study, one batch: a re-sent study (the same study in another folder) is not uploaded twice.

When stage 3 has packed a batch, the batch *claims* its study under each of its
identities: its coded accession and each StudyInstanceUID in it. A claim is a
file in ``<work_dir>/studies/`` named by a keyed hash of the identity (never the
value) that holds the claiming batch's key. The first batch to claim an identity
keeps it; a later batch with any of the same identities is a duplicate, and its
error names the batch that has the study. Claims are made atomically (a hard
link that fails if the name exists), so two workers packing two copies at the
same moment cannot both win.
"""

from __future__ import annotations

from pathlib import Path

from .workdir import Keyed, private_dir, write_once

CLAIM_LENGTH = 32


def claim(folder: Path, keyed: Keyed, key: str, identities: list[str]) -> str:
    """Claim every identity for batch ``key``; return the key of a batch that claimed one first, or ""."""
    private_dir(folder)
    paths = [folder / keyed.hex("study", identity, CLAIM_LENGTH) for identity in identities]
    for path in paths:  # look first, so that a duplicate claims nothing
        if path.exists() and (owner := path.read_text().strip()) != key:
            return owner
    for path in paths:
        write_once(path, key + "\n")
        if (owner := path.read_text().strip()) != key:
            return owner
    return ""
