"""Scenarios: hostile and malformed input. One bad file never blocks the archive, never reaches a log
with PHI, and is never packed unchecked. Each test is named for the scenario it reproduces."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile

import pytest
from conftest import Pipeline, datasets, every_output_byte, file_label, mail_alerts_to, make_study, read_and_assign
from hostile import deeply_nested, truncated_pixels, unknown_vr, wrong_vr_on_patient_id

from sendit_luigi.sample_data import write_study

HOSTILE = make_study(1, patient_id="PHIMRN4242")  # 10 characters: no multiple of 4 as a UL value


@pytest.fixture(scope="module")
def hostile_archive(tmp_path_factory):
    """One batch of good files plus every kind of malformed file, grouped with two good batches."""
    pipe = Pipeline(tmp_path_factory.mktemp("hostile"))
    folder = write_study(pipe.input, HOSTILE, 2, nested=False)
    args = (HOSTILE.patient_id, HOSTILE.patient_name, HOSTILE.accession)
    wrong_vr_on_patient_id(folder, *args)
    unknown_vr(folder, *args)
    deeply_nested(folder, 300, *args)
    deeply_nested(folder, 40, *args)
    truncated_pixels(folder, folder / "IM0000")
    for n in (2, 3):
        write_study(pipe.input, make_study(n), 2)
    pipe.settings["sendit.group_size"] = "3"  # all three batches in one group, as Luigi batches them
    run = pipe.run("--log-level", "DEBUG", workers=1)  # (two workers would each take a part of so small a run)
    return pipe, run, folder


def test_malformed_elements_are_file_errors_and_their_group_still_finishes(hostile_archive):
    pipe, run, folder = hostile_archive
    assert run.code == 0, run.output[-3000:]
    df = pipe.metrics()
    assert sorted(df["status"]) == ["uploaded"] * 3
    errors = df.set_index("batch").loc[pipe.batch_dirs()[HOSTILE.folder].name, "errors"]
    expected = {
        "wrong-vr": "an element's length does not fit its value representation at (0010,0020) PatientID",
        "unknown-vr": "value representation pydicom does not know",
        "nested-300": "nested",
        "nested-40": "nested more than 32 levels deep",
        "half-image": "PixelData (7FE0,0010) holds",
    }
    for name, words in expected.items():
        label = file_label(folder, name)
        assert f"{label}: " in errors and words in errors.split(f"{label}: ")[1].split(";")[0], (name, errors)


def test_a_truncated_image_is_never_packed(hostile_archive):
    pipe, _, _ = hostile_archive
    packed = [ds for t in pipe.tarballs() for ds in datasets(t).values()]
    assert len(packed) == 6  # the 2 good files of each batch, nothing else
    for ds in packed:
        assert len(ds.PixelData) >= ds.Rows * ds.Columns * ds.BitsAllocated // 8


def test_no_value_of_a_malformed_element_reaches_a_log_the_metrics_or_a_result(hostile_archive):
    pipe, run, folder = hostile_archive
    planted = HOSTILE.phi() + [p.name for p in folder.iterdir()]
    texts = [
        ("luigi log (DEBUG)", run.output),
        ("metrics.csv", (pipe.work / "metrics.csv").read_text()),
        ("status --errors", pipe.cli("status", "--errors").stdout),
    ]
    texts += [(str(p), p.read_text()) for name in ("result.json", "row.json") for p in pipe.work.rglob(name)]
    texts += [(name, data.decode("latin-1")) for name, data in every_output_byte(pipe)]
    for where, text in texts:
        for value in planted:
            if value in ("IM0000", "IM0001"):
                continue  # sample file names: not PHI, and short enough to occur in binary data
            assert value not in text, f"{value} in {where}"


def test_a_file_replaced_between_stage_1_and_stage_3_is_never_packed_unchecked(pipe, configured):
    from sendit_luigi import batches, stages

    folder = write_study(pipe.input, make_study(1), 2, nested=False)
    other = write_study(pipe.root / "elsewhere", make_study(9), 1, nested=False)
    [key] = batches.discover()
    b = batches.batch(key)
    settings = read_and_assign(b)
    shutil.copy(other / "IM0000", folder / "IM0001")  # another patient's file under a read name
    result = stages.anonymize(b, settings)
    assert result["status"] == "error" and result["retryable"] is True
    assert "changed after its header was read" in result["error"]
    assert not b.tarball.exists() and not b.headers_file.exists()
    run = pipe.run()  # the next run reads the batch again and finds two patients in it
    assert run.code == 0, run.output
    assert json.loads(b.result_file.read_text())["status"] == "error"
    assert "2 different patient_id values" in json.loads(b.result_file.read_text())["error"]
    for _, data in every_output_byte(pipe):
        for value in make_study(9).phi():
            assert value.encode() not in data


def test_a_write_error_in_the_tarball_leaves_no_tarball_and_the_batch_is_retried(pipe, configured, monkeypatch):
    from sendit_luigi import batches, stages

    write_study(pipe.input, make_study(1), 3, nested=False)
    [key] = batches.discover()
    b = batches.batch(key)
    settings = read_and_assign(b)
    real = tarfile.TarFile.addfile
    calls = []

    def full_then_free(self, info, fileobj=None):  # ENOSPC on the second member, space back for the third
        calls.append(info.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, info, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", full_then_free)
    result = stages.anonymize(b, settings)
    assert result["status"] == "error" and result["retryable"] is True
    assert "no space left on the work disk" in result["error"]
    assert not b.tarball.exists() and not list(b.dir.glob("study.tar.gz-luigi-tmp-*"))
    monkeypatch.setattr(tarfile.TarFile, "addfile", real)
    run = pipe.run()  # the retry packs all three
    assert run.code == 0, run.output
    assert len(datasets(pipe.tarballs()[0])) == 3


def test_a_tarball_that_does_not_read_back_whole_is_refused(tmp_path):
    from sendit_luigi.deidentify.pack import TarballBroken, verify_tarball
    from sendit_luigi.workdir import atomic_writer

    good = tmp_path / "good.tar.gz"
    with atomic_writer(good) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in ("a.dcm", "b.dcm"):
            data = os.urandom(50_000)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    verify_tarball(good, ["a.dcm", "b.dcm"])
    with pytest.raises(TarballBroken, match="holds 2 files, 3 were packed"):
        verify_tarball(good, ["a.dcm", "b.dcm", "c.dcm"])
    broken = bytearray(good.read_bytes())
    broken[len(broken) // 2] ^= 0xFF
    (tmp_path / "broken.tar.gz").write_bytes(bytes(broken))
    with pytest.raises(TarballBroken, match="does not read back"):
        verify_tarball(tmp_path / "broken.tar.gz", ["a.dcm", "b.dcm"])


def test_links_that_lead_outside_the_input_folders_are_never_read(pipe):
    outside = write_study(pipe.root / "outside", make_study(8), 1, nested=False)
    folder = write_study(pipe.input, make_study(1), 2, nested=False)
    os.symlink(outside / "IM0000", folder / "link-out")
    os.symlink(outside, pipe.input / "ACCNLINKED")
    os.mkfifo(folder / "a-fifo")
    run = pipe.run(timeout=120)  # a FIFO that were opened would block the run
    assert run.code == 0, run.output
    rows = pipe.metrics().set_index("batch")
    dirs = pipe.batch_dirs()
    inside = rows.loc[dirs[make_study(1).folder].name]
    assert inside["status"] == "uploaded"
    assert f"{file_label(folder, 'link-out')}: a link that leads outside the input folders" in inside["errors"]
    assert f"{file_label(folder, 'a-fifo')}: not a regular file" in inside["errors"]
    linked = [k for name, k in ((n, d.name) for n, d in dirs.items()) if name == outside.name]
    assert rows.loc[linked[0], "status"] == "error"
    assert "leads outside the input folders" in rows.loc[linked[0], "error"]
    assert len(datasets(pipe.tarballs()[0])) == 2
    for _, data in every_output_byte(pipe):
        for value in make_study(8).phi():
            assert value.encode() not in data
    cleanup = pipe.cli("cleanup", "--delete-inputs")
    assert cleanup.returncode == 0, cleanup.stderr
    assert (outside / "IM0000").exists()  # never deleted through a link


def phi_free(texts: list[tuple[str, str]], planted: list[str]) -> None:
    for where, text in texts:
        for value in planted:
            assert value not in text, f"{value} in {where}"


def test_a_task_failure_reaches_luigid_its_state_and_mail_in_our_words(pipe, luigid, smtp_sink):
    import subprocess
    import sys
    import time

    from conftest import REPO
    from failing_task import PLANTED

    controller, sink = smtp_sink
    mail_alerts_to(pipe, controller)
    pipe.write_cfg()
    env = dict(pipe.env(), PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "luigi",
            "--module",
            "failing_task",
            "LeakyFailure",
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            str(luigid.port),
        ],
        cwd=pipe.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    deadline = time.time() + 10
    while not sink.messages and time.time() < deadline:
        time.sleep(0.1)
    [task_id] = luigid.api("task_list", status="FAILED")
    error = luigid.api("fetch_error", task_id=task_id)["error"]
    assert "LeakyFailure failed: ValueError" in error and "failing_task.py" not in error
    luigid.stop()
    state = (luigid.log.parent / "luigid.state").read_bytes().decode("latin-1")
    texts = [
        ("stderr", proc.stdout + proc.stderr),
        ("fetch_error", error),
        ("mail", "\n".join(sink.messages)),
        ("luigid.state", state),
    ]
    assert "failed" in texts[2][1]
    phi_free(texts, [PLANTED, "PHIFAILDOE"])


def test_phi_in_folder_names_file_names_and_elements_reaches_no_operator_view(pipe, luigid, smtp_sink):
    import time

    controller, sink = smtp_sink
    study = make_study(5, folder="PHIDOE^JANE_MRN00009")
    folder = write_study(pipe.input, study, 2, nested=False)
    sub = folder / "PHIDOE^JANE"
    sub.mkdir()
    (sub / "MRN00009_notes.txt").write_text(f"{study.patient_name} {study.patient_id}")
    wrong_vr_on_patient_id(folder, "PHIMRN7777", study.patient_name, study.accession)
    broken = pipe.input / "PHIROE^RICHARD"
    broken.mkdir()
    (broken / "PHIROE_report.txt").write_text("not dicom")  # a batch that ends in error: an alert
    pipe.bucket.write_text("not a folder: every upload fails")  # a task that fails: luigid's error page
    mail_alerts_to(pipe, controller)
    default = pipe.run(scheduler_port=luigid.port)
    assert default.code != 0  # the uploads failed
    debug = pipe.run("--log-level", "DEBUG", scheduler_port=luigid.port)
    deadline = time.time() + 10
    while len(sink.messages) < 2 and time.time() < deadline:
        time.sleep(0.1)
    tasks = luigid.raw("/api/task_list")
    errors = [luigid.raw("/api/fetch_error", task_id=t) for t in luigid.api("task_list", status="FAILED")]
    assert errors and "uploads failed" in errors[0]
    luigid.stop()
    state = (luigid.log.parent / "luigid.state").read_bytes().decode("latin-1")
    assert pipe.cli("metrics").returncode == 0  # the run wrote none: its uploads failed
    texts = [
        ("stderr (default)", default.output),
        ("stderr (DEBUG)", debug.output),
        ("task_list", tasks),
        ("fetch_error", "\n".join(errors)),
        ("luigid.state", state),
        ("mail", "\n".join(sink.messages)),
        ("metrics.csv", (pipe.work / "metrics.csv").read_text()),
        ("status --errors", pipe.cli("status", "--errors").stdout),
    ]
    texts += [(str(p), p.read_text()) for name in ("result.json", "row.json") for p in pipe.work.rglob(name)]
    assert "ended with error" in texts[5][1] and "(0010,0020) PatientID (BytesLengthException)" in texts[6][1]
    planted = study.phi() + ["PHIDOE", "PHIMRN7777", "MRN00009", "PHIROE", "RICHARD", str(pipe.input)]
    phi_free(texts, planted)


QUIET_CHECK = """
import logging, sys, warnings
import pydicom.config as c
from pydicom.data import get_testdata_file

before = c.settings.reading_validation_mode, logging.getLogger("pydicom").level
import sendit_luigi
from sendit_luigi.inputs import parse_dicom

now = c.settings.reading_validation_mode, logging.getLogger("pydicom").level
assert now == before, "importing the package changed pydicom's validation mode or logger"
parse_dicom(open(get_testdata_file("CT_small.dcm"), "rb").read())
assert c.settings.reading_validation_mode == c.IGNORE, "reading through the package left pydicom checking values"
assert logging.getLogger("pydicom").level == logging.ERROR
"""


def test_importing_the_package_leaves_pydicom_as_it_was_and_its_first_read_quiets_it():
    """pydicom's settings are process-wide: they are set by the package's reader, not by an import."""
    import subprocess
    import sys

    check = subprocess.run([sys.executable, "-c", QUIET_CHECK], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
