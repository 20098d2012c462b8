"""Benchmark 1: de-identification throughput on one core, against two baselines in the same run.

* naive: deid's ``get_identifiers`` + ``replace_identifiers`` per file with
  deid's default recipe, the way sendit used it;
* floor: ``dcmread`` + setting exactly the elements our recipe changes (same
  elements, constant values) + ``save_as``, with no other work;
* ours: stage 1 (header extraction, quarantine filter) + stage 3 (recipe,
  UID remap, date shift, re-read, leak check, tar.gz) of the pipeline.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword

from sendit_luigi import config
from sendit_luigi.deidentify import Context, LeakCheck, Profile, Recipe, pack_study, uid_remapper
from sendit_luigi.headers import extract_headers
from sendit_luigi.workdir import Keyed

RECIPE = Path(__file__).resolve().parent.parent / "sendit_luigi" / "recipes" / "sendit.dicom"


def default_recipe(filters: tuple[str, ...] = ("burned_in",)) -> Recipe:
    """The shipped recipe with the default profile options, as the pipeline builds it."""
    profile = Profile(
        config.DEFAULT_TABLE,
        frozenset(config.split(config.PROFILE_OPTIONS)),
        frozenset(config.split(config.DESCRIPTORS)),
    )
    return Recipe(RECIPE, profile, frozenset(), filters)


def ours(folder: Path, work: Path, recipe: Recipe | None = None) -> tuple[float, int]:
    recipe = recipe or default_recipe()
    start = time.perf_counter()
    headers = extract_headers(folder, [], recipe.profile, recipe.burned_in)
    jitter = -11
    ctx = Context(
        {"patient_id": "PBENCH", "accession": "ABENCH", "jitter": jitter},
        jitter,
        uid_remapper(Keyed(b"b" * 64), "2.25."),
    )
    leak = LeakCheck.for_study(headers["phi"], jitter)
    good = [f for f in headers["files"] if "error" not in f and "quarantine" not in f]
    result = pack_study(folder, [], good, recipe, ctx, leak, work / "study.tar.gz", work / "scratch", 1)
    return time.perf_counter() - start, result.packed


def floor_ops(paths: list[Path]) -> list[list]:
    """Per file: the private tags and the (path, action) our recipe would apply, computed untimed."""
    recipe = default_recipe(())
    plans = []
    for path in paths:
        ds = pydicom.dcmread(path)
        private = [e.tag for e in ds if e.tag.is_private or e.tag.group == 0]
        plans.append([private, [(p, a) for p, a, _ in recipe.plan(ds)]])  # plan() removes them on the way
    return plans


CONSTANT = {"UI": "2.25.1", "DA": "20000101", "DT": "20000101000000", "TM": "000000"}


def floor(paths: list[Path], work: Path) -> float:
    plans = floor_ops(paths)
    start = time.perf_counter()
    for path, (private, ops) in zip(paths, plans):
        ds = pydicom.dcmread(path)
        for tag in private:
            del ds[tag]
        for p, action in ops:
            parent = ds
            for i in range(0, len(p) - 1, 2):
                parent = parent[p[i]].value[p[i + 1]]
            if p[-1] not in parent:
                continue
            if action in ("REMOVE", "remove"):
                del parent[p[-1]]
            else:
                elem = parent[p[-1]]
                elem.value = None if action in ("BLANK", "blank") or elem.VR == "SQ" else CONSTANT.get(elem.VR, "X")
        for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "LongitudinalTemporalInformationModified"):
            tag = tag_for_keyword(keyword)
            ds.add_new(tag, dictionary_VR(tag), "X")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(work / "floor.dcm", enforce_file_format=True)
    return time.perf_counter() - start


def naive(paths: list[Path], work: Path, limit: int, seconds: float = 20.0) -> tuple[float, int]:
    from deid.dicom import get_identifiers, replace_identifiers
    from deid.logger import bot

    bot.level = -10
    out = work / "naive"
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    done = 0
    for path in paths[:limit]:
        ids = get_identifiers([str(path)])
        replace_identifiers([str(path)], ids=ids, save=True, output_folder=str(out), overwrite=True)
        done += 1
        if time.perf_counter() - start > seconds:
            break
    return time.perf_counter() - start, done


def run(folder: Path, naive_limit: int = 60) -> dict:
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in paths)
    work = Path(tempfile.mkdtemp(prefix="bench-deid-"))
    warm = work / "warm"
    warm.mkdir()
    for path in paths[:3]:
        shutil.copy(path, warm / path.name)
    try:
        # Warm-up (imports, first-use caches) for each contender, untimed: steady state is compared.
        recipe = default_recipe()
        ours(warm, work, recipe)
        floor(paths[:3], work)
        naive(paths, work, 2)
        t_ours, packed = ours(folder, work, recipe)
        t_floor = floor(paths, work)
        t_naive, n_naive = naive(paths, work, naive_limit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = {
        "files": len(paths),
        "megabytes": size / 1e6,
        "ours_files_s": packed / t_ours,
        "ours_mb_s": size / 1e6 / t_ours,
        "floor_files_s": len(paths) / t_floor,
        "floor_mb_s": size / 1e6 / t_floor,
        "naive_files_s": n_naive / t_naive,
        "naive_mb_s": size / len(paths) * n_naive / 1e6 / t_naive,
    }
    rates["ours_vs_naive"] = rates["ours_files_s"] / rates["naive_files_s"]
    rates["floor_vs_ours"] = rates["floor_files_s"] / rates["ours_files_s"]
    return rates
