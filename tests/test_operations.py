"""Scenario: running a job for real: luigid progress, several worker processes, status, report, cleanup, compose."""

from __future__ import annotations

import configparser
import json
import re
import time

import yaml
from conftest import REPO, Pipeline, make_study, tree_digest
from dasher_server import DasherServer


def add_studies(pipe: Pipeline, count: int, files: int):
    studies = [make_study(n) for n in range(1, count + 1)]
    for study in studies:
        pipe.add(study, files=files, nested=False)
    return studies


def shown(replies: list[str]) -> tuple[set[str], set[float]]:
    """The status messages and progress percentages in luigid's ``task_list`` answers."""
    messages, progress = set(), set()
    for text in replies:
        for task in json.loads(text)["response"].values():
            if task.get("status_message"):
                messages.add(task["status_message"])
            if task.get("progress_percentage") is not None:
                progress.add(task["progress_percentage"])
    return messages, progress


def test_luigid_shows_progress_and_never_a_patient_id(pipe, luigid, tmp_path):
    studies = add_studies(pipe, 4, 24)
    pipe.settings["sendit.group_size"] = "2"
    # The run stands still once a study is partly de-identified (sendit_luigi/stops.py): what luigid
    # shows then is looked at without racing the run; then the run is let go.
    stopped = tmp_path / "stopped"
    env = dict(pipe.env(), SENDIT_STOP_AT="tarball half written", SENDIT_STOP_FILE=str(stopped))
    process = pipe.launch(pipe.command(workers=2, scheduler_port=luigid.port), env, tmp_path / "run.log")
    deadline = time.time() + 120
    while not stopped.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert stopped.exists(), (tmp_path / "run.log").read_text()[-3000:]
    during = [luigid.raw("/api/task_list", status=s, search="") for s in ("RUNNING", "BATCH_RUNNING")]
    stopped.with_name(stopped.name + ".released").touch()
    replies = list(during)
    while process.poll() is None:  # the pages while it runs on, for the PHI check below
        replies += [luigid.raw("/api/task_list", status=s, search="") for s in ("RUNNING", "BATCH_RUNNING")]
        time.sleep(0.05)
    assert process.wait() == 0, (tmp_path / "run.log").read_text()[-3000:]
    messages, progress = shown(during)
    assert any(re.search(r"^\w{16}: de-identifying: \d+/24 files, 0 errors$", m) for m in messages), messages
    assert any(0 < p < 100 for p in progress), progress
    done = luigid.api("task_list", status="DONE", search="")
    families = {task["name"] for task in done.values()}
    assert {"ProcessAll", "ExportMetrics", "UploadAll", "Anonymize", "ExtractHeaders"} <= families
    replies.append(json.dumps({"response": done}))
    messages, progress = shown(replies)
    assert any(m.startswith("uploading:") for m in messages)
    assert 100 in progress
    planted = [value for s in studies for value in s.phi()]
    pages = [
        luigid.raw("/api/task_search", task_str="A"),
        luigid.raw("/api/worker_list"),
        luigid.raw("/api/task_list"),
        luigid.raw("/api/task_list", status="DONE"),
    ]
    for text in replies + pages:
        for value in planted:
            assert value not in text


def test_two_worker_processes_share_one_luigid_and_never_run_a_batch_twice(pipe, luigid, tmp_path):
    add_studies(pipe, 12, 5)
    pipe.settings["sendit.group_size"] = "1"
    pipe.settings["sendit.chunk_size"] = "3"  # a process works on the chunks it hands to luigid: four of them
    pipe.settings["retcode.already_running"] = "0"  # as in docker/luigi.cfg: sharing the work is normal
    pipe.settings["retcode.missing_data"] = "0"  # ... and so is a chunk in flight in the other process
    # No timing: DASHER holds the first process inside its first chunk's stage 2 until the second
    # process has registered with luigid, so the second always finds chunks left, however fast the machine.
    with DasherServer() as server:
        pipe.settings.update(
            {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.secrets_file": str(server.write_secrets(tmp_path / "secrets.json")),
            }
        )
        server.hold()
        # On one host, a second luigi process needs --no-lock (Luigi's per-host lock); on two hosts it does not.
        first = pipe.start("--no-lock", workers=1, scheduler_port=luigid.port)
        try:
            assert server.arrived.wait(120)
            second = pipe.start("--no-lock", workers=1, scheduler_port=luigid.port)
            # The first process's one worker is blocked in its DASHER call: a second call can only come
            # from the second process, working on a chunk of its own.
            deadline = time.time() + 120
            while len(server.paths) < 2:
                assert time.time() < deadline, "the second process never reached stage 2"
                time.sleep(0.05)
        finally:
            server.release()
        assert first.wait(300) == 0 and second.wait(300) == 0
    ran = []  # per worker process: the batch keys whose Anonymize it ran
    for log in sorted(pipe.root.glob("run-*.log")):
        keys = re.findall(r"batch ([0-9a-f]{16}): (?:done|error|empty), ", log.read_text())
        assert len(keys) == len(set(keys))  # never twice within one worker either
        ran.append(set(keys))
    assert ran[0] and ran[1], "both workers should have done part of the work"
    assert not ran[0] & ran[1]
    assert ran[0] | ran[1] == {d.name for d in pipe.batch_dirs().values()}
    assert len(pipe.tarballs()) == 12 and len(pipe.rows()) == 12


def test_status_lists_batches_and_filters_by_status(pipe):
    add_studies(pipe, 2, 2)
    (pipe.input / "ACCN00000").mkdir()
    assert pipe.run().code == 0
    table = pipe.cli("status").stdout
    assert table.count("uploaded") >= 2 and "empty" in table and "3 batches" in table
    only = pipe.cli("status", "--only", "empty").stdout
    rows = only.splitlines()[1:-1]  # between the table's header and the summary line
    assert rows and all(" empty " in row for row in rows) and not any("uploaded" in row for row in rows)
    assert "batch: the batch folder has no files" in pipe.cli("status", "--errors").stdout
    assert pipe.cli("--help").returncode == 0 and "cleanup" in pipe.cli("--help").stdout


def test_the_report_shows_throughput_stages_sizes_and_errors(pipe):
    studies = add_studies(pipe, 3, 3)
    assert pipe.run().code == 0
    out = pipe.cli("report")
    assert out.returncode == 0, out.stderr
    assert re.search(r"[\d.]+ GB/day, [\d.]+ batches/hour", out.stdout)
    png, page = pipe.work / "report.png", pipe.work / "report.html"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    text = page.read_text()
    assert "gb_per_day" in text and "batches_per_hour" in text and "data:image/png;base64," in text
    for value in (v for s in studies for v in s.phi()):
        assert value not in text


def test_cleanup_removes_work_files_of_uploaded_batches_only_and_inputs_only_when_asked(pipe):
    add_studies(pipe, 2, 2)
    broken = pipe.input / "ACCN49999"
    broken.mkdir()
    (broken / "junk").write_text("not dicom")
    assert pipe.run().code == 0
    inputs = tree_digest(pipe.input)
    dry = pipe.cli("cleanup", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would remove") == 2
    assert all((d / "headers.json").exists() for d in pipe.batch_dirs().values())

    assert pipe.cli("cleanup").returncode == 0
    dirs = pipe.batch_dirs()
    for name, d in dirs.items():
        uploaded = name != "ACCN49999"
        assert (d / "headers.json").exists() != uploaded
        assert (d / "study.tar.gz").exists() is False or not uploaded
        assert (d / "result.json").exists()
    assert tree_digest(pipe.input) == inputs  # inputs untouched without the flag
    again = pipe.run()
    assert again.code == 0 and "ran successfully" not in again.output
    assert "3 batches: 1 error, 2 uploaded" in pipe.cli("status").stdout

    assert pipe.cli("cleanup", "--delete-inputs").returncode == 0
    assert sorted(p.name for p in pipe.input.iterdir()) == ["ACCN49999"]  # the errored batch stays


def test_the_docker_luigid_reads_the_scheduler_settings_the_tests_run_luigid_with():
    """The test luigid reads luigi.cfg's ``[scheduler]`` section; the image's luigid reads docker/luigi.cfg's."""
    shipped, docker = configparser.ConfigParser(), configparser.ConfigParser()
    shipped.read(REPO / "luigi.cfg")
    docker.read(REPO / "docker" / "luigi.cfg")
    assert {k: v for k, v in docker["scheduler"].items() if k != "state_path"} == dict(shipped["scheduler"])


def test_compose_services_commands_and_volumes_line_up_with_the_config():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "docker" / "luigi.cfg")
    scheduler, worker = compose["services"]["scheduler"], compose["services"]["worker"]
    port = cfg["core"]["scheduler_port"]
    assert scheduler["command"][0] == "luigid" and port in scheduler["command"]
    assert scheduler["ports"] == [f"127.0.0.1:{port}:{port}"]  # the visualizer only on loopback
    assert cfg["core"]["scheduler_host"] == "scheduler"
    command = worker["command"]
    assert command[:4] == ["luigi", "--module", "sendit_luigi", "ProcessAll"]
    assert command[command.index("--scheduler-host") + 1] == "scheduler"
    mounts = {v.split(":")[1]: v for v in worker["volumes"]}
    for path in (cfg["sendit"]["input_folders"], cfg["sendit"]["work_dir"], cfg["storage"]["local_root"]):
        assert path in mounts, f"{path} is not mounted into the worker"
    assert mounts[cfg["sendit"]["input_folders"]].endswith(":ro")  # the input is never written
    assert worker["environment"]["LUIGI_CONFIG_PATH"] == "/app/luigi.cfg"
    assert "COPY docker/luigi.cfg /app/luigi.cfg" in (REPO / "Dockerfile").read_text()
    state = cfg["scheduler"]["state_path"]
    assert any(v.endswith(":" + state.rsplit("/", 1)[0]) for v in scheduler["volumes"])
