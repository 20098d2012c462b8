"""Scenarios on disks that are too small: the work disk smaller than the archive, a full bucket disk.

Each disk is a real tmpfs of a few hundred KB mounted inside the test (root only;
the test skips where mounting is impossible).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Pipeline, make_study

FLOOR_GB = 0.0002  # [sendit] min_free_gb: 200 KB


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, int], Path]]:
    mounted: list[Path] = []

    def mount(path: Path, size: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=700", "tmpfs", str(path)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def uploaded(pipe: Pipeline) -> set[str]:
    return {d.name for d in (pipe.work / "batches").iterdir() if (d / "uploaded.json").exists()}


def archive_on_a_small_work_disk(pipe: Pipeline, small_disk, batches: int) -> None:
    """``batches`` three-file batches; a work disk with room for the floor, the vault and checkpoints,
    and about two batches; ``remove_after_upload`` on."""
    for n in range(1, batches + 1):
        pipe.add(make_study(n), files=3, nested=False)
    batch = max(folder_bytes(f) for f in pipe.input.iterdir())
    small_disk(pipe.work, int(FLOOR_GB * 1e9 + 2.5 * batch + 150_000))
    pipe.settings.update({"sendit.min_free_gb": str(FLOOR_GB), "sendit.remove_after_upload": "true"})


def test_an_archive_larger_than_the_work_disk_finishes_in_several_runs(pipe, small_disk):
    archive_on_a_small_work_disk(pipe, small_disk, 6)
    first = pipe.run()
    assert first.code != 0, first.output  # not everything is done, and the run says so
    assert "waiting for disk space" in first.output
    done = uploaded(pipe)
    assert 0 < len(done) < 6, first.output  # progress, although the disk cannot hold the archive
    assert not list(pipe.work.glob("batches/*/study.tar.gz"))  # uploaded work copies are freed
    for _ in range(6):
        again = pipe.run()
        assert len(uploaded(pipe)) > len(done), again.output  # every run makes progress
        done = uploaded(pipe)
        if again.code == 0:
            break
    assert len(done) == 6 and len(pipe.tarballs()) == 6 and len(pipe.rows()) == 6
    assert set(pipe.metrics()["status"]) == {"uploaded"}
    assert pipe.run().code == 0  # nothing left: a rerun does nothing and succeeds


def test_max_batches_rounds_upload_what_they_processed(pipe, small_disk):
    archive_on_a_small_work_disk(pipe, small_disk, 4)
    for round_ in range(1, 5):
        assert pipe.run("--max-batches", "1").code == 0
        assert len(uploaded(pipe)) == round_
    assert len(pipe.tarballs()) == 4


def test_a_full_bucket_disk_is_an_upload_error_that_leaves_no_partial_object(pipe, small_disk):
    pipe.add(make_study(1), files=3, nested=False)
    small_disk(pipe.bucket, 16 * 1024)  # smaller than the tarball
    failed = pipe.run()
    assert failed.code != 0
    assert not [p for p in pipe.bucket.rglob("*") if p.is_file() and p.name != "metadata.sqlite"]  # no .part
    metrics = pipe.metrics()  # written although the upload failed
    assert list(metrics["status"]) == ["done processing"]
    error = (next((pipe.work / "batches").iterdir()) / "upload_error.json").read_text()
    assert "No space left on device" in error or "no space" in error.lower()


def test_the_disk_guard_covers_the_bucket_disk_and_names_small_sizes_in_mb(pipe, small_disk):
    pipe.add(make_study(1), files=3, nested=False)
    small_disk(pipe.bucket, 256 * 1024)
    pipe.settings["sendit.min_free_gb"] = "0.00024"  # 240 KB: the work disk has it; the bucket not after a copy
    failed = pipe.run()
    assert failed.code != 0
    error = (next((pipe.work / "batches").iterdir()) / "upload_error.json").read_text()
    assert "bucket disk" in error and " MB" in error and "min_free_gb" in error, error
    assert not [p for p in pipe.bucket.rglob("*") if p.is_file()]
