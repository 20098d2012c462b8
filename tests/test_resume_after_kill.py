"""Scenario: the worker is killed with SIGKILL mid-run; a rerun gives exactly what an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import Pipeline, make_study

from sendit_luigi import stops

# Each kill lands exactly at its point: the run stops there and waits to be killed (sendit_luigi/stops.py).


def outputs(pipe: Pipeline) -> tuple[dict, list]:
    objects = {
        str(p.relative_to(pipe.bucket)): p.read_bytes()
        for p in pipe.bucket.rglob("*")
        if p.is_file() and p.name != "metadata.sqlite"
    }
    volatile = ("UploadTime", "storage_download", "storage_metadataLink")
    rows = [{k: v for k, v in r.items() if k not in volatile} for r in pipe.rows()]
    return objects, rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run; its input folder and secret are shared with the killed runs."""
    pipe = Pipeline(tmp_path_factory.mktemp("reference"))
    for n in range(1, 6):
        pipe.add(make_study(n), files=15, nested=False)
    secret = pipe.root / "shared-secret.key"
    secret.write_text("5e" * 32 + "\n")
    secret.chmod(0o600)
    pipe.settings.update({"sendit.secret_file": str(secret), "sendit.group_size": "1"})
    assert pipe.run().code == 0
    return pipe, outputs(pipe)


@pytest.mark.parametrize("point", stops.POINTS)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_rerun_after_sigkill_gives_byte_identical_outputs(reference, tmp_path, point, workers):
    ref, (ref_objects, ref_rows) = reference
    pipe = Pipeline(tmp_path)
    pipe.settings.update(ref.settings)
    pipe.settings["sendit.input_folders"] = str(ref.input)
    pipe.work.mkdir()
    command = pipe.command(workers=workers)
    stopped = tmp_path / "stopped-at-the-point"
    process = pipe.launch(
        command, dict(pipe.env(), SENDIT_STOP_AT=point, SENDIT_STOP_FILE=str(stopped)), tmp_path / "killed.log"
    )
    deadline = time.time() + 120
    while not stopped.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert stopped.exists(), f"the run never reached '{point}'"
    os.killpg(process.pid, signal.SIGKILL)  # the worker and any task processes it forked
    process.wait()

    rerun = pipe.run(workers=workers)
    assert rerun.code == 0, rerun.output
    objects, rows = outputs(pipe)
    assert objects.keys() == ref_objects.keys()  # no stray .part or duplicate objects
    assert objects == ref_objects  # byte-identical tarballs
    assert sorted(rows, key=str) == sorted(ref_rows, key=str)  # one row per study, same values
    leftovers = [p for p in pipe.root.rglob("*") if "-luigi-tmp-" in p.name or p.name.endswith(".part")]
    assert leftovers == []
    assert pipe.run().code == 0 and len(pipe.rows()) == 5
