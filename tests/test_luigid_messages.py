"""Scenario: what luigid shows for each batch and for the run is that batch's own, and true."""

from __future__ import annotations

import re

from conftest import make_study


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
