"""Scenario: images whose pixels may show PHI (deid's header filter) are quarantined, never uploaded."""

from __future__ import annotations

from pathlib import Path

import deid_data
import pydicom
from conftest import datasets, file_label, make_study

from sendit_luigi.sample_data import write_study

ULTRASOUND = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"


def add_burned_in_ultrasound(folder: Path, like: Path) -> None:
    ds = pydicom.dcmread(ULTRASOUND)
    assert ds.BurnedInAnnotation == "YES"
    template = pydicom.dcmread(like)
    for keyword in ("PatientID", "PatientName", "AccessionNumber", "StudyDate", "StudyInstanceUID"):
        setattr(ds, keyword, template[keyword].value)
    ds.save_as(folder / "ultrasound", enforce_file_format=True)


def test_a_burned_in_annotation_image_is_quarantined_and_the_rest_uploaded(pipe):
    folder = write_study(pipe.input, make_study(1), 2, nested=False)
    add_burned_in_ultrasound(folder, folder / "IM0000")
    run = pipe.run()
    assert run.code == 0, run.output
    row = pipe.metrics().iloc[0]
    assert row["status"] == "uploaded"
    assert row["files_quarantined"] == 1 and row["files_error"] == 0
    assert f"{file_label(folder, 'ultrasound')}: quarantined (burned_in" in row["errors"]
    packed = datasets(pipe.tarballs()[0])
    assert len(packed) == 2
    assert all(ds.Modality != "US" for ds in packed.values())
    assert "quarantined" in pipe.cli("status", "--errors").stdout


def test_the_optional_non_axial_rule_quarantines_scouts(pipe):
    pipe.settings["deid.quarantine_filters"] = "burned_in,non_axial"
    write_study(pipe.input, make_study(1), 2)  # CT_small is AXIAL, MR_small is not
    assert pipe.run().code == 0
    row = pipe.metrics().iloc[0]
    assert row["files_quarantined"] == 1
    assert "non_axial" in row["errors"]


def test_a_filter_name_the_recipe_lacks_fails_the_run_clearly(pipe):
    pipe.settings["deid.quarantine_filters"] = "no_such_filter"
    write_study(pipe.input, make_study(1), 1)
    run = pipe.run()
    assert run.code != 0
    assert "has no %filter no_such_filter" in run.output
