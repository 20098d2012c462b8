"""Scenario: mistyped or unsafe settings stop the run before any work, with a message naming the fix.

Seen before: a misspelt section or key ran with the defaults and reported success; a work folder inside
the input made the next run read the pipeline's own files (headers.json holds PHI) as a batch, and set
the input folder to 0700; collection = ../../x wrote outside the bucket; compress_level = 9 failed only
in stage 3, after hours of stages 1 and 2.
"""

from __future__ import annotations

import stat

import pytest
from conftest import make_study


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"sendti.group_size": "3"}, "section [sendti]; did you mean [sendit]?"),
        ({"sendit.min_free_gbs": "5"}, "[sendit] min_free_gbs is not a setting; did you mean min_free_gb?"),
        ({"sendit.input_folder": "elsewhere"}, "[sendit] input_folder is not a setting; did you mean input_folders?"),
        ({"sendit.compress_level": "9"}, "[sendit] compress_level = 9 is out of range (0 to 3)"),
        ({"storage.collection": "../../x"}, "[storage] collection must be one name"),
    ],
    ids=["section", "key", "input_folder", "compress_level", "collection"],
)
def test_a_mistyped_or_out_of_range_setting_stops_the_run_before_any_work(pipe, settings, words):
    pipe.add(make_study(1), files=1)
    pipe.settings.update(settings)
    run = pipe.run()
    assert run.code != 0
    assert words in run.output
    assert not (pipe.work / "batches").exists()  # nothing was read, nothing was written
    assert not pipe.bucket.exists()


@pytest.mark.parametrize("where", ["work_dir", "local_root"])
def test_the_pipelines_own_folders_inside_an_input_folder_are_refused(pipe, where):
    pipe.add(make_study(1), files=1)
    mode = stat.S_IMODE(pipe.input.stat().st_mode)
    section = "sendit" if where == "work_dir" else "storage"
    pipe.settings[f"{section}.{where}"] = str(pipe.input / "inside")
    run = pipe.run()
    assert run.code != 0 and "overlap" in run.output
    assert stat.S_IMODE(pipe.input.stat().st_mode) == mode  # the input folder is left as it was
    assert not (pipe.input / "inside").exists()
