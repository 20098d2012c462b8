"""The table itself: an independent transcription agrees with it, and the docs say what the code does."""

from __future__ import annotations

import importlib.util
import json
import runpy

from conftest import REPO, recipe_for

from sendit_luigi.inspection import profile_markdown, profile_summary

CATEGORIES = [
    "D_TAGS",
    "Z_TAGS",
    "X_TAGS",
    "U_TAGS",
    "Z_D_TAGS",
    "X_Z_TAGS",
    "X_D_TAGS",
    "X_Z_D_TAGS",
    "X_Z_U_STAR_TAGS",
]


def test_the_basic_profile_column_agrees_with_an_independent_transcription():
    """dicom-anonymizer (Kitware) ships the same table, scraped on its own, as tag lists per action."""
    spec = importlib.util.find_spec("dicomanonymizer")
    theirs_path = spec.submodule_search_locations[0] + "/dicom_anonymization_databases/dicomfields_2026c.py"
    theirs = runpy.run_path(theirs_path)
    by_tag = {}
    for category in CATEGORIES:
        code = category[: -len("_TAGS")].replace("_STAR", "*").replace("_", "/")
        for tag in theirs[category]:
            if len(tag) == 2:
                by_tag[f"{tag[0]:04X}{tag[1]:04X}"] = code
    ours = {r["tag"].upper(): r["basic"] for r in json.loads(recipe_for().profile.table_path.read_text())["rules"]}
    shared = set(ours) & set(by_tag)
    assert len(shared) > 640
    assert {t: (ours[t], by_tag[t]) for t in shared if ours[t] != by_tag[t]} == {}
    assert sorted(set(by_tag) - set(ours)) == []  # 2026d has every row of 2026c


def test_profile_md_and_the_readme_table_are_what_the_code_does():
    recipe = recipe_for()
    assert (REPO / "PROFILE.md").read_text() == profile_markdown(recipe), "run: python -m sendit_luigi profile"
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- profile summary: python -m sendit_luigi profile --summary -->\n")[1]
    assert block.split("<!-- end of profile summary -->")[0] == profile_summary(recipe)
