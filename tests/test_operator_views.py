"""Scenarios: what the operator commands and the console show is true (status, retry, dry run, metrics, logs)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
from conftest import Pipeline, make_study

from sendit_luigi.sample_data import write_study


def add_bad(pipe: Pipeline, name: str = "ACCN-BROKEN") -> None:
    folder = pipe.input / name
    folder.mkdir()
    (folder / "note.txt").write_text("not dicom")


def key_of(pipe: Pipeline, folder: str) -> str:
    return pipe.batch_dirs()[folder].name


def test_the_run_ends_with_a_batch_summary_and_fail_on_batch_errors_sets_the_exit_status(pipe):
    pipe.add(make_study(1), files=1, nested=False)
    add_bad(pipe)
    (pipe.input / "ACCN-EMPTY").mkdir()
    run = pipe.run()
    assert run.code == 0  # batch errors are data by default
    assert "3 batches: 1 uploaded, 1 error, 1 empty" in run.output
    pipe.settings["sendit.fail_on_batch_errors"] = "true"
    assert pipe.run().code == 0  # a rerun that does no new work exits 0
    add_bad(pipe, "ACCN-BROKEN-2")
    failing = pipe.run()
    assert failing.code != 0 and "1 batches ended in error in this run" in failing.output


def test_the_console_log_is_info_without_completeness_checks_and_debug_when_asked(pipe):
    for n in (1, 2):
        pipe.add(make_study(n), files=1, nested=False)
    run = pipe.run()
    assert run.code == 0
    assert "DEBUG:" not in run.output and "Checking if" not in run.output
    assert "Informed scheduler that task" not in run.output
    assert re.search(r"INFO: batch [0-9a-f]{16}: done, 1 files, 0 errors", run.output)  # each batch's outcome
    debug = pipe.run("--log-level", "DEBUG")
    assert "Checking if ProcessAll" in debug.output


def test_an_errored_batch_whose_input_changed_is_retried_by_itself(pipe):
    study = make_study(1)
    folder = pipe.input / study.folder
    folder.mkdir()
    (folder / "note.txt").write_text("not dicom")
    assert pipe.run().code == 0
    key = key_of(pipe, study.folder)
    assert json.loads((pipe.work / "batches" / key / "result.json").read_text())["status"] == "error"
    assert pipe.run().code == 0  # unchanged input: stays in error, not read again
    assert json.loads((pipe.work / "batches" / key / "result.json").read_text())["status"] == "error"
    (folder / "note.txt").unlink()
    write_study(pipe.input, study, 1, nested=False)  # the input is fixed
    assert pipe.run().code == 0
    assert json.loads((pipe.work / "batches" / key / "result.json").read_text())["status"] == "done"
    assert len(pipe.tarballs()) == 1


def test_retry_makes_named_or_all_errored_batches_run_again(pipe):
    pipe.add(make_study(1), files=1, nested=False)
    add_bad(pipe)
    assert pipe.run().code == 0
    bad = key_of(pipe, "ACCN-BROKEN")
    good = key_of(pipe, make_study(1).folder)
    refused = pipe.cli("retry", good)
    assert refused.returncode != 0 and "uploaded" in refused.stdout + refused.stderr
    done = pipe.cli("retry", "--errors")
    assert done.returncode == 0 and "1 batches will run again" in done.stdout, done.stdout
    assert not (pipe.work / "batches" / bad / "result.json").exists()
    again = pipe.run()
    assert again.ran("ExtractHeaders") == 1  # read again from the start: only the retried batch
    assert pipe.cli("retry", bad).returncode == 0


def test_retry_and_reprocess_are_run_even_if_the_batch_folders_time_did_not_move(pipe):
    """The settled record trusts the batch folders' times; an operator's retry or reprocess does not:
    here each command's change is hidden from the folder times (as a clock set back would hide it)."""
    pipe.add(make_study(1), files=1, nested=False)
    pipe.add(make_study(2), files=1, nested=False)
    add_bad(pipe)
    assert pipe.run().code == 0
    dirs = pipe.batch_dirs()
    for command, folder, stage in (
        ("retry", "ACCN-BROKEN", "ExtractHeaders"),
        ("reprocess", make_study(2).folder, "Anonymize"),
    ):
        d = dirs[folder]
        stamp = d.stat()
        assert pipe.cli(command, d.name).returncode == 0
        os.utime(d, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        again = pipe.run()
        assert again.code == 0, again.output
        assert again.ran(stage) == 1, (command, again.output)


def test_status_summary_one_batch_and_where(pipe):
    pipe.add(make_study(1), files=2, nested=False)
    add_bad(pipe)
    assert pipe.run().code == 0
    summary = pipe.cli("status", "--summary").stdout
    assert "2 batches: 1 uploaded, 1 error" in summary
    assert re.search(r"files: 3\b", summary) and "GB" in summary
    assert "last errors:" in summary and key_of(pipe, "ACCN-BROKEN") in summary
    assert re.search(r"last run: 2/2 batches", summary), summary
    bad = key_of(pipe, "ACCN-BROKEN")
    one = pipe.cli("status", bad).stdout
    assert f"batch {bad}: error" in one and "headers:" in one and "not a DICOM file" in one
    assert "ACCN-BROKEN" not in one and "note.txt" not in one  # status never shows a folder or a file name
    where = pipe.cli("where", bad)
    assert where.stdout.strip() == str(pipe.input / "ACCN-BROKEN")
    assert "PHI" in where.stderr
    assert pipe.cli("status", "0" * 16).returncode != 0


def test_dry_run_keys_are_stable_before_the_first_run_and_predict_it(pipe):
    for n in range(1, 6):
        pipe.add(make_study(n), files=1, nested=False)
    first = pipe.cli("dry-run", "--max-batches", "3").stdout
    second = pipe.cli("dry-run", "--max-batches", "3").stdout
    listed = re.findall(r"\b[0-9a-f]{16}\b", first)
    assert listed and listed == re.findall(r"\b[0-9a-f]{16}\b", second)
    written = sorted(str(p.relative_to(pipe.work)) for p in pipe.work.rglob("*") if p.is_file())
    assert written == ["secret.key"]  # nothing that holds PHI
    assert pipe.run("--max-batches", "3").code == 0
    taken = {d.name for d in pipe.batch_dirs().values() if (d / "uploaded.json").exists()}
    todo = first.split("this run would work on")[1]
    assert taken == set(re.findall(r"\b[0-9a-f]{16}\b", todo))


def test_metrics_have_iso_times_a_run_column_and_the_report_counts_per_run(pipe):
    for n in (1, 2):
        pipe.add(make_study(n), files=1, nested=False)
    assert pipe.run().code == 0
    first = pd.read_csv(pipe.work / "metrics.csv", dtype=str)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", v) for v in first["anonymize_start"])
    assert first["run"].nunique() == 1 and first["run"].notna().all()
    pipe.add(make_study(3), files=1, nested=False)
    assert pipe.run().code == 0
    df = pd.read_csv(pipe.work / "metrics.csv", dtype=str)
    assert df["run"].nunique() == 2
    report = pipe.cli("report")
    assert report.returncode == 0
    page = (pipe.work / "report.html").read_text()
    assert "last run" in page and "<td>1</td>" in page  # the last run's batches, as an integer
    shutil.rmtree(pipe.work / "groups", ignore_errors=True)


def test_stage_2_seconds_are_each_batchs_share_of_its_groups_call(pipe):
    """Seen: each batch carried its whole group's time, so the column added up to 20 times the truth."""
    for n in range(1, 7):
        pipe.add(make_study(n), files=1, nested=False)
    pipe.settings["sendit.group_size"] = "3"
    assert pipe.run(workers=1).code == 0
    records = [json.loads((d / "identifiers.json").read_text()) for d in pipe.batch_dirs().values()]
    groups: dict[float, list[dict]] = {}
    for record in records:
        groups.setdefault(record["stage"]["start"], []).append(record)
    assert len(groups) == 2  # two calls, of three batches each
    for members in groups.values():
        whole = members[0]["stage"]["group_seconds"]
        assert abs(sum(m["stage"]["seconds"] for m in members) - whole) < 0.01
    df = pd.read_csv(pipe.work / "metrics.csv")
    assert abs(df["identifiers_seconds"].sum() - sum(g[0]["stage"]["group_seconds"] for g in groups.values())) < 0.01


def plant_an_error_behind_the_summarys_back(d: Path) -> None:
    """Rewrite batch folder ``d``'s result as an error, keeping the folder's time: a summary that still
    counts the batch as uploaded has not read it again."""
    result = json.loads((d / "result.json").read_text())
    stamp = d.stat()
    (d / "result.json").write_text(json.dumps(dict(result, status="error", error="planted: never read")))
    os.utime(d, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_a_second_status_summary_reads_only_the_batches_whose_folder_changed(pipe):
    """At 10,000 batches, reading every checkpoint took half of ``status --summary``'s second."""
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1, nested=False)
    assert pipe.run().code == 0
    for d in pipe.batch_dirs().values():  # as a second after the run: a folder changed within 0.1 s is read again
        os.utime(d, ns=(d.stat().st_atime_ns, d.stat().st_mtime_ns - 1_000_000_000))
    assert "3 batches: 3 uploaded" in pipe.cli("status", "--summary").stdout
    plant_an_error_behind_the_summarys_back(pipe.batch_dirs()[make_study(1).folder])
    assert "3 batches: 3 uploaded" in pipe.cli("status", "--summary").stdout


def test_the_run_primes_status_summary_so_its_first_answer_reads_only_what_changed_since(pipe):
    """The run's last task reads every batch anyway: it leaves their summary entries for ``status --summary``."""
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1, nested=False)
    assert pipe.run().code == 0
    for d in pipe.batch_dirs().values():  # settled: changed more than 0.1 s before the next run ends
        os.utime(d, ns=(d.stat().st_atime_ns, d.stat().st_mtime_ns - 1_000_000_000))
    (pipe.work / "status-summary.json").unlink(missing_ok=True)
    pipe.add(make_study(4), files=1, nested=False)
    assert pipe.run().code == 0  # a new batch: the metrics, and so the summary's entries, are made again
    plant_an_error_behind_the_summarys_back(pipe.batch_dirs()[make_study(1).folder])
    assert "4 batches: 4 uploaded" in pipe.cli("status", "--summary").stdout


def test_status_summary_follows_every_change_to_a_batch(pipe):
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1, nested=False)
    add_bad(pipe)
    assert pipe.run().code == 0
    assert "4 batches: 3 uploaded, 1 error" in pipe.cli("status", "--summary").stdout
    d = pipe.batch_dirs()[make_study(2).folder]
    (d / "uploaded.json").unlink()  # as a failed upload's sweep would leave it
    assert "4 batches: 2 uploaded, 1 done, not uploaded, 1 error" in pipe.cli("status", "--summary").stdout
    shutil.rmtree(pipe.input / "ACCN-BROKEN")
    assert pipe.cli("retry", "--errors").returncode == 0
    pipe.add(make_study(4), files=1, nested=False)
    assert pipe.run().code == 0
    summary = pipe.cli("status", "--summary").stdout
    assert "uploaded" in summary and "1 error" not in summary, summary
    assert re.search(r"files: 4\b", summary), summary


def test_a_batch_gets_its_work_folder_when_its_first_stage_starts_and_is_known_before(pipe):
    """At 100,000 batches, making every work folder before the first task took most of the start."""
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1, nested=False)
    assert pipe.run("--max-batches", "1").code == 0
    assert len(list((pipe.work / "batches").iterdir())) == 1  # the one batch this run took
    summary = pipe.cli("status", "--summary").stdout
    assert summary.startswith("3 batches: 1 uploaded"), summary  # the other two are known all the same
    started = next((pipe.work / "batches").iterdir()).name
    waiting = [k for k in re.findall(r"\b[0-9a-f]{16}\b", pipe.cli("status").stdout) if k != started]
    assert len(set(waiting)) == 2
    folders = {pipe.cli("where", k).stdout.strip() for k in set(waiting)}
    assert folders == {str(pipe.input / make_study(n).folder) for n in (1, 2, 3)} - {
        pipe.cli("where", started).stdout.strip()
    }
    assert pipe.run().code == 0 and len(pipe.tarballs()) == 3
