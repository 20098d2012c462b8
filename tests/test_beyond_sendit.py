"""Scenarios beyond sendit: run limits, disk guard, alerts, dry run, inspect, audit export, watch mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from conftest import Pipeline, datasets, file_label, mail_alerts_to, make_study, members, tree_digest
from hostile import deeply_nested
from phi_seed import write_seeded_study
from test_pixel_phi_quarantine import add_burned_in_ultrasound

from sendit_luigi.sample_data import write_study


def keys_done(pipe: Pipeline) -> set[str]:
    return {d.name for d in pipe.batch_dirs().values() if (d / "uploaded.json").exists()}


def test_max_batches_takes_the_next_n_in_a_stable_order(pipe):
    for n in range(1, 6):
        pipe.add(make_study(n), files=1, nested=False)
    assert pipe.run("--max-batches", "2").code == 0
    first = keys_done(pipe)
    assert first == set(sorted(d.name for d in pipe.batch_dirs().values())[:2])  # the first two keys
    assert pipe.run("--max-batches", "2").code == 0
    second = keys_done(pipe) - first
    assert len(second) == 2 and max(first) < min(second)
    assert pipe.run("--max-batches", "2").code == 0
    assert len(keys_done(pipe)) == 5
    assert "ran successfully" not in pipe.run("--max-batches", "2").output
    assert len(pipe.metrics()) == 5  # the metrics always list every batch


def test_a_batch_does_not_start_when_the_disk_would_run_low(pipe):
    pipe.add(make_study(1), files=1)
    pipe.settings["sendit.min_free_gb"] = "1000000"
    short = pipe.run()
    assert short.code != 0
    assert "needs about" in short.output and "GB free, under [sendit] min_free_gb = 1e+06" in short.output
    assert re.search(r"needs about \d+\.\d MB on the work disk", short.output)  # not "0.00 GB" for a small batch
    waiting = [json.loads(p.read_text()) for p in pipe.work.glob("batches/*/result.json")]
    assert [r["status"] for r in waiting] == ["waiting"] and not list(pipe.work.glob("batches/*/study.tar.gz"))
    assert "1 batches: 1 waiting for disk space" in short.output
    pipe.settings["sendit.min_free_gb"] = "0.001"
    assert pipe.run().code == 0 and len(pipe.tarballs()) == 1


def test_batch_errors_and_task_failures_reach_the_operator_without_phi(pipe, smtp_sink):
    controller, sink = smtp_sink
    good, bad = make_study(1), make_study(2)
    pipe.add(good, files=1)
    broken = pipe.input / bad.folder
    broken.mkdir()
    (broken / "report.txt").write_text(f"{bad.patient_name} {bad.patient_id}")
    pipe.bucket.write_text("not a folder: every upload fails")
    mail_alerts_to(pipe, controller)
    run = pipe.run()
    assert run.code != 0
    deadline = time.time() + 10
    while len(sink.messages) < 2 and time.time() < deadline:
        time.sleep(0.1)
    text = "\n".join(sink.messages)
    assert "ended with error" in text and "none of the 1 files is a readable DICOM file" in text
    assert "task ProcessAll" in text and "uploads failed" in text
    for value in good.phi() + bad.phi() + [str(pipe.input)]:
        assert value not in text


def test_dry_run_lists_batches_and_outputs_and_writes_nothing(pipe):
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=2)
    (pipe.input / "ACCN77777.tmp").mkdir()
    run = pipe.run("--dry-run")
    assert run.code == 0, run.output
    assert "3 batches found; this run would work on 3" in run.output
    assert "Collection/TESTIRB/Entity/<coded patient>/" in run.output
    assert [p.name for p in pipe.work.rglob("*")] == ["secret.key"] and not pipe.bucket.exists()
    for n in (1, 2, 3):
        assert make_study(n).folder not in run.output
    assert pipe.run("--max-batches", "1").code == 0
    before = tree_digest(pipe.root)
    planned = pipe.cli("dry-run").stdout
    assert "this run would work on 2" in planned and "1 other batches are done" in planned
    assert tree_digest(pipe.root) == before


def test_inspect_passes_over_a_file_nested_past_the_bound_and_shows_the_next(pipe):
    """The display walks a file with the pipeline's one bounded walk: a file the pipeline refuses
    (sequences nested deeper than it reads) is not the sample shown."""
    study = make_study(1)
    folder = write_study(pipe.input, study, 1, nested=False)
    deep = deeply_nested(folder, 40, study.patient_id, study.patient_name, study.accession, label="-a")
    deep.rename(folder / "AAA-first")  # the sample is the first readable file in name order
    out = pipe.cli("inspect", str(folder))
    assert out.returncode == 0, out.stderr
    assert "sample file 2 of 2" in out.stdout and "PatientID" in out.stdout
    assert study.patient_id not in out.stdout + out.stderr


def test_inspect_shows_what_happens_to_each_element_with_values_redacted(pipe):
    seeded = write_seeded_study(pipe.input / "ACCSEED", "INS", files=2)
    add_burned_in_ultrasound(pipe.input / "ACCSEED", pipe.input / "ACCSEED" / "slice0")
    out = pipe.cli("inspect", str(pipe.input / "ACCSEED"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for line in (
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "StudyDate",
        "SOPInstanceUID",
        "ReferringPhysicianName",
        "Modality",
    ):
        assert line in text
    assert "replace with the coded patient id" in text
    assert "new consistent UID (profile U)" in text and "empty (profile Z)" in text
    assert "shift by the patient's date shift" in text
    assert (
        "options in force: clean_descriptors, retain_longitudinal_modified_dates, retain_patient_characteristics"
        in text
    )
    assert "PS3.15 2026d" in text
    assert "remove (private tag)" in text and "removed with its sequence" in text
    assert "<PN, " in text and "keep" in text
    label = file_label(pipe.input / "ACCSEED", "ultrasound")
    assert "quarantine: 1 of 3 files" in text and f"{label}: burned_in" in text and "ultrasound" not in text
    for value in seeded.values + seeded.uids:
        assert value not in text


def test_audit_export_is_private_and_maps_keys_folders_and_ids(pipe):
    studies = [make_study(1), make_study(2)]
    for study in studies:
        pipe.add(study, files=1)
    assert pipe.run().code == 0
    metrics_before = (pipe.work / "metrics.csv").read_bytes()
    target = pipe.root / "reid.json"
    out = pipe.cli("audit", "export", str(target))
    assert out.returncode == 0 and "PHI" in out.stdout
    assert target.stat().st_mode & 0o777 == 0o600
    data = json.loads(target.read_text())
    rows = {r["folder"].rsplit("/", 1)[-1]: r for r in data["batches"]}
    coded = {r["CodedAccessionNumberID"]: r for r in pipe.rows()}
    for study in studies:
        row = rows[study.folder]
        assert row["patient_id"] == study.patient_id and row["accession"] == study.accession
        assert row["coded_accession"] in coded
        assert coded[row["coded_accession"]]["CodedPatientID"] == row["coded_patient_id"]
    assert {p["original_id"] for p in data["vault"]["patients"]} == {s.patient_id for s in studies}
    back = pipe.cli("audit", "read", str(target)).stdout
    assert studies[0].patient_id in back and "re-identification key" in back
    assert (pipe.work / "metrics.csv").read_bytes() == metrics_before
    assert not any("reid" in str(p) for p in pipe.bucket.rglob("*"))


def test_a_folder_is_finished_only_once_it_has_not_changed_for_the_quiet_period(configured, tmp_path):
    """The watcher's rule, on a clock of the test's own: no sleeping, no race with a copy."""
    from sendit_luigi.watch import Watcher

    pipe = configured
    study, later = make_study(1), make_study(2)
    write_study(tmp_path / "staging", study, 3, nested=False)
    write_study(tmp_path / "staging", later, 2, nested=False)
    now = [0.0]
    watcher = Watcher(10.0, [], pipe.work / "watch-ready.json", clock=lambda: now[0])
    # a copy tool that writes file by file, 9 s apart (under the quiet period)
    target = pipe.input / study.folder
    target.mkdir()
    for path in sorted((tmp_path / "staging" / study.folder).iterdir()):
        shutil.copy(path, target / path.name)
        assert watcher.finished() == []
        now[0] += 9
    assert watcher.finished() == []  # 9 s since the last file
    with open(next(target.iterdir()), "ab") as grown:  # a file still growing is a change too
        grown.write(b"\0\0")
    now[0] += 9
    assert watcher.finished() == []
    now[0] += 10
    [key] = watcher.finished()
    assert not (pipe.work / "batches" / key / "source.json").exists()  # the watcher records nothing
    # a copy tool that writes to NAME.tmp and renames when done: never while .tmp, then after the quiet period
    tmp_target = pipe.input / (later.folder + ".tmp")
    shutil.copytree(tmp_path / "staging" / later.folder, tmp_target)
    for _ in range(3):
        now[0] += 10
        assert watcher.finished() == [key]
    tmp_target.rename(pipe.input / later.folder)
    assert watcher.finished() == [key]
    now[0] += 10
    assert len(watcher.finished()) == 2


def test_watch_runs_the_pipeline_on_finished_folders_and_stops_on_sigterm(pipe):
    pipe.add(make_study(1), files=5, nested=False)
    pipe.add(make_study(2), files=3, nested=False)
    copying = pipe.input / (make_study(3).folder + ".tmp")  # still being copied: never picked up
    write_study(pipe.root / "staging", make_study(3), 2, nested=False).rename(copying)
    pipe.write_cfg()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "sendit_luigi", "watch", "--interval", "0.1", "--quiet", "0.3"],
        cwd=pipe.root,
        env=pipe.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while len(pipe.tarballs()) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert sorted(len(members(t)) for t in pipe.tarballs()) == [3, 5]
        results = [json.loads((d / "result.json").read_text()) for d in pipe.batch_dirs().values()]
        assert sorted(r["files"] for r in results) == [3, 5] and all(r["status"] == "done" for r in results)
    finally:
        watcher.send_signal(signal.SIGTERM)
        try:
            output, _ = watcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            raise
    assert watcher.returncode == 0, output
    assert "running the pipeline" in output
    for study in (make_study(1), make_study(2), make_study(3)):
        assert study.folder not in output and study.patient_id not in output
    assert all(len(datasets(t)) for t in pipe.tarballs())
    assert os.path.exists(pipe.work / "watch-ready.json")
