"""Scenarios: the same study sent twice, in two folders (a re-sent study)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import Pipeline, make_study


def results(pipe: Pipeline) -> dict[str, dict]:
    """Input folder name -> its batch's result.json."""
    return {name: json.loads((d / "result.json").read_text()) for name, d in pipe.batch_dirs().items()}


@pytest.mark.parametrize("other_date", [False, True], ids=["same-copy", "copy-with-another-study-date"])
def test_a_study_sent_twice_is_uploaded_once_and_the_copy_names_the_first_batch(pipe, other_date):
    study = make_study(1)
    pipe.add(study, files=2, nested=False)
    copy = dataclasses.replace(study, folder=study.folder + "_RESENT")
    if other_date:  # a re-send whose dates were edited: another tarball name, so no name clash
        copy = dataclasses.replace(copy, study_date="20200101")
    pipe.add(copy, files=2, nested=False)
    pipe.add(make_study(2), files=1, nested=False)  # an unrelated study goes on as usual

    run = pipe.run()
    assert run.code == 0, run.output  # a duplicate is a batch error: data, not a failed run

    by_folder = results(pipe)
    first, second = by_folder[study.folder], by_folder[copy.folder]
    keys = {name: d.name for name, d in pipe.batch_dirs().items()}
    statuses = sorted([first["status"], second["status"]])
    assert statuses == ["done", "error"], (first, second)
    winner, loser = (study.folder, copy.folder) if first["status"] == "done" else (copy.folder, study.folder)
    error = by_folder[loser]["error"]
    assert "the same study" in error and keys[winner] in error, error
    assert study.folder not in error and study.accession not in error  # names the key, not the folder
    # one object and one row for the study (no orphan under another name), plus the unrelated one
    assert len(pipe.tarballs()) == 2 and len(pipe.rows()) == 2
    metrics = pipe.metrics()
    assert sorted(metrics["status"]) == ["error", "uploaded", "uploaded"]
    assert pipe.run().code == 0 and len(pipe.tarballs()) == 2  # a rerun keeps it that way
