"""Scenario: what luigid shows for each batch and for the run is that batch's own, and true."""

from __future__ import annotations

import re

from conftest import Luigid, make_study, shipped_scheduler_section


def test_every_batch_task_ends_with_its_own_outcome_and_process_all_counts_the_run(pipe, luigid):
    for n in range(1, 5):
        pipe.add(make_study(n), files=2, nested=False)
    broken = pipe.input / "ACCN-NOT-DICOM"
    broken.mkdir()
    (broken / "note.txt").write_text("not dicom")
    (pipe.input / "ACCN-EMPTY").mkdir()
    pipe.settings["sendit.group_size"] = "3"  # groups mix good and bad batches
    run = pipe.run(scheduler_port=luigid.port)
    assert run.code == 0, run.output
    keys = {name: d.name for name, d in pipe.batch_dirs().items()}
    tasks = luigid.api("task_list", status="DONE", search="")
    names = [t["display_name"] for t in tasks.values()]
    assert all(len(name) <= 64 for name in names), [name for name in names if len(name) > 64]
    final: dict[tuple[str, str], str] = {}
    for task in tasks.values():
        label = task["params"].get("label", "")
        if task["name"] in ("ExtractHeaders", "GetIdentifiers", "Anonymize") and "+" not in label:
            final[(task["name"], label)] = task["status_message"] or ""
    for family in ("ExtractHeaders", "GetIdentifiers", "Anonymize"):
        for key in keys.values():
            message = final[(family, key)]
            assert message.startswith(f"{key}: "), (family, key, message)  # its own key, no other batch's
    for n in range(1, 5):
        assert final[("Anonymize", keys[make_study(n).folder])].endswith(": done: 2 files")
    assert final[("Anonymize", keys["ACCN-NOT-DICOM"])].startswith(f"{keys['ACCN-NOT-DICOM']}: ERROR: ")
    assert final[("Anonymize", keys["ACCN-EMPTY"])].startswith(f"{keys['ACCN-EMPTY']}: EMPTY: ")
    process_all = next(t for t in tasks.values() if t["name"] == "ProcessAll")
    assert re.match(
        r"6/6 batches, \d+ files/s, ETA 0 s, 1 error; 6 batches: 4 uploaded, 1 error, 1 empty",
        process_all["status_message"],
    ), process_all["status_message"]


def test_quick_one_file_batches_cost_luigid_three_messages_each_and_few_progress_calls(pipe, luigid):
    """Every call is luigid's time and the worker's: a one-file batch is told its three outcomes
    (headers, identifiers, result) and no per-file progress; the progress bars move at most twice a second."""
    batches, group = 24, 8
    for n in range(1, batches + 1):
        pipe.add(make_study(n), files=1, nested=False)
    pipe.settings["sendit.group_size"] = str(group)
    before = luigid.calls()
    run = pipe.run(scheduler_port=luigid.port, workers=1)
    assert run.code == 0, run.output
    calls = luigid.calls() - before
    groups = 3 * batches // group  # of the three stages
    others = 2 * 10 + 8  # the upload shards' and the wrappers' own messages, at most
    assert calls["set_task_status_message"] <= 3 * batches + groups + others, calls
    assert calls["set_task_progress_percentage"] <= 2 * groups + others, calls
    final = luigid.api("task_list", status="DONE", search="")
    told = [t["status_message"] for t in final.values() if t["name"] == "Anonymize" and "+" not in t["params"]["label"]]
    assert len(told) == batches and all(m.endswith(": done: 1 files") for m in told), told


def test_past_max_shown_tasks_the_page_counts_finished_tasks_and_search_still_finds_a_batch(pipe, tmp_path):
    """At 100,000 batches luigid holds tens of thousands of finished tasks. Listing them all took it
    1.5-2.2 s, during which it answered no worker. Past ``[scheduler] max_shown_tasks`` the page's
    finished list is their number, and a batch key typed in its search box still finds that batch."""
    assert "max_shown_tasks = 10000" in shipped_scheduler_section()
    for n in range(1, 7):
        pipe.add(make_study(n), files=1, nested=False)
    (tmp_path / "luigid").mkdir()
    server = Luigid(tmp_path / "luigid", max_shown_tasks=10)  # the shipped section, with a limit this small run passes
    try:
        run = pipe.run(scheduler_port=server.port, workers=1)
        assert run.code == 0, run.output
        done = server.api("task_list", status="DONE", upstream_status="", search="")
        assert list(done) == ["num_tasks"] and done["num_tasks"] > 10, done
        key = pipe.batch_dirs()[make_study(3).folder].name
        found = server.api("task_list", status="DONE", upstream_status="", search=key)
        own = {t["name"]: t["status_message"] for t in found.values() if t["params"].get("label") == key}
        assert own["Anonymize"] == f"{key}: done: 1 files", found
        assert own["ExtractHeaders"].startswith(f"{key}: headers read"), found
    finally:
        server.stop()
