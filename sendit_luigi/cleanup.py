"""Removing what a finished batch no longer needs: an explicit, operator-run step.

For every batch whose study is uploaded, the work files that hold PHI or bulk
(``headers.json``, ``identifiers.json``, ``study.tar.gz``) go; ``source.json``,
``result.json`` and ``uploaded.json`` stay, so status, metrics and reruns still
know the batch is done. Input folders are only ever touched with
``--delete-inputs``, and then only those of uploaded batches.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .batches import Batch, batch, status
from .inputs import inside, walk_files
from .workdir import read_json, write_json

REMOVABLE = ("headers.json", "identifiers.json", "study.tar.gz")


@dataclass
class Item:
    key: str
    work_files: list[Path] = field(default_factory=list)
    input_folder: Path | None = None
    input_files: int = 0
    bytes: int = 0


def plan(keys: list[str], delete_inputs_in: list[Path] | None = None) -> list[Item]:
    """What cleanup would remove, batch by batch (uploaded batches only).

    With ``delete_inputs_in`` (the input folders, links resolved), also each batch's input folder inside them.
    """
    items = []
    for key in keys:
        b = batch(key)
        if status(b)[0] != "uploaded":
            continue
        item = Item(key, [b.dir / name for name in REMOVABLE if (b.dir / name).exists()])
        item.bytes = sum(p.stat().st_size for p in item.work_files)
        if delete_inputs_in is not None:
            folder = b.folder()
            # never through a link, never outside the input folders
            if folder.is_dir() and not folder.is_symlink() and inside(folder, delete_inputs_in):
                files = list(walk_files(folder))
                item.input_folder, item.input_files = folder, len(files)
                item.bytes += sum(p.stat().st_size for p in files if p.is_file())
        if item.work_files or item.input_folder:
            items.append(item)
    return items


def apply(items: list[Item]) -> None:
    for item in items:
        free(batch(item.key), item.work_files)
        if item.input_folder is not None:
            shutil.rmtree(item.input_folder)


def free(b: Batch, work_files: list[Path] | None = None) -> None:
    """Remove an uploaded batch's removable work files (``[sendit] remove_after_upload`` calls this)."""
    result = read_json(b.result_file)
    if not result.get("cleaned"):
        write_json(b.result_file, {**result, "cleaned": True})  # first: a kill here leaves a done batch
    for path in work_files if work_files is not None else [b.dir / name for name in REMOVABLE]:
        path.unlink(missing_ok=True)
