"""Scenario: running again. A rerun does nothing; a lost checkpoint redoes only its batch."""

from __future__ import annotations

import json
import os

import pytest
from conftest import Pipeline, make_study, tree_digest


@pytest.fixture
def done(pipe: Pipeline) -> Pipeline:
    for n in range(1, 5):
        pipe.add(make_study(n), files=2)
    first = pipe.run()
    assert first.code == 0, first.output
    assert first.ran("Anonymize") >= 1
    return pipe


def test_a_rerun_does_no_work_and_changes_no_output_byte(done: Pipeline):
    before = tree_digest(done.root)
    again = done.run()
    assert again.code == 0, again.output
    assert "ran successfully" not in again.output
    assert tree_digest(done.root) == before


def test_a_rerun_of_a_settled_archive_reads_no_batch_until_a_batch_folder_changes(done: Pipeline):
    """At 100,000 batches, a rerun with nothing to do read every batch's checkpoints: 42 s once
    they had left the page cache. The run that settled every batch leaves a record, and while no
    batch folder has changed since, the next run reads none of them."""
    dirs = done.batch_dirs().values()
    for d in dirs:  # behind the run's back (the folder keeps its time): a run that reads it redoes the batch
        result = json.loads((d / "result.json").read_text())
        stamp = d.stat()
        (d / "result.json").write_text(json.dumps(dict(result, status="error", retryable=True, at=0)))
        os.utime(d, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    again = done.run()

    assert again.code == 0, again.output
    assert again.ran("Anonymize") == 0
    os.utime(next(iter(dirs)))  # one folder changed: the record no longer holds, and every batch is read
    third = done.run()
    assert third.code == 0, third.output
    assert third.ran("Anonymize") == len(dirs) == 4


def test_a_settled_record_that_is_not_json_is_ignored_and_the_batches_are_read(done: Pipeline):
    (done.work / "settled.json").write_text("{ not json")
    tarball = next(iter(done.batch_dirs().values())) / "study.tar.gz"
    tarball.unlink()  # so that reading the batches shows: this one is made again

    again = done.run()

    assert again.code == 0, again.output
    assert again.ran("Anonymize") == 1 and tarball.exists()


def test_deleting_one_batchs_tarball_redoes_only_that_batch(done: Pipeline):
    dirs = done.batch_dirs()
    victim = dirs[make_study(2).folder]
    tarball = victim / "study.tar.gz"
    original = tarball.read_bytes()
    others = {k: tree_digest(d) for k, d in dirs.items() if d != victim}
    bucket = tree_digest(done.bucket)
    tarball.unlink()

    again = done.run()

    assert again.code == 0, again.output
    assert again.ran("Anonymize") == 1
    assert again.ran("ExtractHeaders") == 0 and again.ran("GetIdentifiers") == 0
    assert tarball.read_bytes() == original  # byte-identical remake
    assert {k: tree_digest(d) for k, d in dirs.items() if d != victim} == others
    assert tree_digest(done.bucket) == bucket  # uploaded once, not again
    assert len(done.rows()) == 4


def test_a_new_batch_later_is_processed_and_the_metrics_follow(done: Pipeline):
    done.add(make_study(9), files=2)
    again = done.run()
    assert again.code == 0, again.output
    assert again.ran("ExtractHeaders") == 1
    assert len(done.tarballs()) == 5
    assert len(done.metrics()) == 5


def test_metrics_left_behind_by_a_run_stopped_after_its_uploads_are_rewritten_by_the_next(done: Pipeline):
    """The no-op check reads folder times, not every checkpoint: it must still see the new batch."""
    done.add(make_study(9), files=2)
    uploads_only = done.run(task="UploadAll")  # as a run killed between the uploads and the metrics
    assert uploads_only.code == 0, uploads_only.output
    assert len(done.tarballs()) == 5 and len(done.metrics()) == 4
    again = done.run()
    assert again.code == 0, again.output
    assert again.ran("ExportMetrics") == 1 and again.ran("Anonymize") == 0
    assert len(done.metrics()) == 5


def test_a_failed_upload_makes_luigi_exit_non_zero_and_a_rerun_finishes(pipe: Pipeline):
    pipe.add(make_study(1), files=2)
    pipe.bucket.write_text("a file where the bucket folder should be")
    failed = pipe.run()
    assert failed.code != 0
    assert "upload" in failed.output.lower()
    pipe.bucket.unlink()
    again = pipe.run()
    assert again.code == 0, again.output
    assert again.ran("Anonymize") == 0  # processing was kept; only the upload ran
    assert len(pipe.tarballs()) == 1 and len(pipe.rows()) == 1


def test_luigi_config_path_points_at_another_config(pipe: Pipeline, tmp_path_factory):
    other_bucket = tmp_path_factory.mktemp("elsewhere") / "bucket"
    pipe.settings["storage.local_root"] = str(other_bucket)
    pipe.add(make_study(1), files=1)
    assert pipe.run().code == 0
    assert len(list(other_bucket.rglob("*.tar.gz"))) == 1
    assert not pipe.bucket.exists()


def test_a_half_written_upload_marker_is_swept_by_the_next_upload(pipe):
    """Seen once after a SIGKILL: an uploaded.json-luigi-tmp-... survived the rerun."""
    from conftest import make_study

    pipe.add(make_study(1), files=1)
    assert pipe.run().code == 0
    [work] = pipe.batch_dirs().values()
    (work / "uploaded.json").unlink()  # as if killed while writing the marker
    leftover = work / "uploaded.json-luigi-tmp-1234567890"
    leftover.write_text("{half")
    assert pipe.run().code == 0
    assert (work / "uploaded.json").exists() and not leftover.exists()
