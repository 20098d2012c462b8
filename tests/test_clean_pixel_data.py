"""Scenario: the Clean Pixel Data option blacks out the regions a recipe filter names, and says so.

Off by default (burned-in images are quarantined). With it on, a file that a
filter with ``coordinates`` flags is packed with those regions zeroed, marked
in its DeidentificationMethodCodeSequence (CID 7050 113101) and counted in the
metrics; a flagged file without known regions is still quarantined.
"""

from __future__ import annotations

import numpy as np
import pydicom
from conftest import RECIPE, datasets, make_study
from test_pixel_phi_quarantine import ULTRASOUND, add_burned_in_ultrasound

from sendit_luigi.sample_data import write_study

BAND = "\nLABEL A known ultrasound header band (test site)\n  contains Modality US\n  coordinates 0,0,1024,60\n"


def site_recipe(pipe):
    text = RECIPE.read_text().replace("%filter non_axial", "%filter known_regions\n" + BAND + "\n%filter non_axial")
    path = pipe.root / "site.dicom"
    path.write_text(text)
    return path


def test_known_regions_are_blacked_out_marked_and_counted_when_the_option_is_on(pipe):
    folder = write_study(pipe.input, make_study(1), 1, nested=False)
    add_burned_in_ultrasound(folder, folder / "IM0000")
    pipe.settings.update(
        {
            "sendit.recipe": str(site_recipe(pipe)),
            "deid.quarantine_filters": "known_regions",
            "deid.profile_options": "retain_longitudinal_modified_dates,retain_patient_characteristics,"
            "clean_descriptors,clean_pixel_data",
        }
    )
    run = pipe.run()
    assert run.code == 0, run.output
    row = pipe.metrics().iloc[0]
    assert row["files_cleaned"] == 1 and row["files_quarantined"] == 0 and row["files_error"] == 0
    cleaned = [ds for ds in datasets(pipe.tarballs()[0]).values() if ds.Modality == "US"]
    assert len(cleaned) == 1
    original = pydicom.dcmread(ULTRASOUND).pixel_array
    pixels = cleaned[0].pixel_array
    assert not pixels[:60].any() and original[:60].any()  # the band is black now
    assert np.array_equal(pixels[61:], original[61:])  # the rest is untouched
    codes = {i.CodeValue for i in cleaned[0].DeidentificationMethodCodeSequence}
    assert "113101" in codes
    others = [ds for ds in datasets(pipe.tarballs()[0]).values() if ds.Modality != "US"]
    assert all("113101" not in {i.CodeValue for i in ds.DeidentificationMethodCodeSequence} for ds in others)


def test_without_the_option_the_same_file_is_quarantined(pipe):
    folder = write_study(pipe.input, make_study(1), 1, nested=False)
    add_burned_in_ultrasound(folder, folder / "IM0000")
    pipe.settings.update({"sendit.recipe": str(site_recipe(pipe)), "deid.quarantine_filters": "known_regions"})
    assert pipe.run().code == 0
    row = pipe.metrics().iloc[0]
    assert row["files_quarantined"] == 1 and row["files_cleaned"] == 0
    assert all(ds.Modality != "US" for ds in datasets(pipe.tarballs()[0]).values())


def test_a_flagged_file_without_known_regions_stays_quarantined_with_the_option_on(pipe):
    folder = write_study(pipe.input, make_study(1), 1, nested=False)
    add_burned_in_ultrasound(folder, folder / "IM0000")
    pipe.settings["deid.profile_options"] = "clean_pixel_data"  # the shipped burned_in filter names no region
    assert pipe.run().code == 0
    row = pipe.metrics().iloc[0]
    assert row["files_quarantined"] == 1 and row["files_cleaned"] == 0
