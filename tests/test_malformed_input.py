"""Scenario: every kind of bad input, one per batch; each gets its own clear error and nothing good is lost."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pydicom
import pytest
from conftest import Pipeline, datasets, file_label, make_study, read_and_assign
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from sendit_luigi.sample_data import write_study


def first_file(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())[0]


def rewrite(path, **changes):
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def multiframe(path, frames: int, like) -> int:
    """A ``frames``-frame CT of the same patient and study as the file ``like``."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    template = pydicom.dcmread(like)
    for keyword in ("PatientID", "PatientName", "AccessionNumber", "StudyDate", "StudyInstanceUID"):
        setattr(ds, keyword, template[keyword].value)
    ds.PixelData = np.tile(ds.pixel_array, (frames, 1, 1)).tobytes()
    ds.NumberOfFrames = frames
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    pipe = Pipeline(tmp_path_factory.mktemp("bad"))
    good_one = write_study(pipe.input, make_study(1), 2)
    junk = {
        "truncated": first_file(good_one).read_bytes()[:700],
        "zero": b"",
        "random": np.random.default_rng(1).bytes(5000),
        "dicm-garbage": b"\0" * 128 + b"DICM" + np.random.default_rng(2).bytes(3000),
        "readme.txt": b"this folder came from the PACS export\n",
    }
    jpeg = io.BytesIO()
    Image.new("L", (16, 16)).save(jpeg, "JPEG")
    junk["photo.jpg"] = jpeg.getvalue()
    for name, data in junk.items():
        (good_one / name).write_bytes(data)
    os.symlink(first_file(good_one), good_one / "link-to-good")
    os.symlink(good_one / "nowhere", good_one / "dangling")

    pipe.settings["sendit.study_id_from"] = "accession"  # no fallback: a study without one is an error
    for n, missing in ((2, "PatientID"), (3, "AccessionNumber")):
        folder = write_study(pipe.input, make_study(n), 2)
        for path in folder.rglob("IM*"):
            rewrite(path, **{missing: None})
    folder = write_study(pipe.input, make_study(4), 2)
    for path in folder.rglob("IM*"):
        rewrite(path, StudyDate=None, SeriesDate=None, ContentDate=None, AcquisitionDate=None)

    two_patients = write_study(pipe.input, make_study(5), 2)
    rewrite(first_file(two_patients), PatientID="PHIMRNOTHER")
    two_studies = write_study(pipe.input, make_study(6), 2)
    rewrite(first_file(two_studies), AccessionNumber="ACCNOTHER")

    dup = write_study(pipe.input, make_study(7), 2)
    shutil.copy(first_file(dup), dup / "copy-of-first")

    big = write_study(pipe.input, make_study(8), 1)
    big_size = multiframe(big / "multiframe", 600, first_file(big))  # ~20 MB, 600 frames

    odd = make_study(9, folder="ACC 9 ünïcode")
    write_study(pipe.input, odd, 2)

    run = pipe.run()
    df = pipe.metrics()
    dirs = pipe.batch_dirs()
    by_folder = {name: df[df["batch"] == d.name].iloc[0] for name, d in dirs.items()}
    return pipe, run, by_folder, big_size


def test_the_run_finishes(bad):
    _, run, by_folder, _ = bad
    assert run.code == 0, run.output
    assert len(by_folder) == 9


def test_junk_files_are_file_errors_and_good_files_go_through(bad):
    pipe, _, by_folder, _ = bad
    row = by_folder[make_study(1).folder]
    assert row["status"] == "uploaded"
    errors = row["errors"]
    folder = pipe.input / make_study(1).folder
    assert f"{file_label(folder, 'zero')}: empty file (0 bytes)" in errors
    for name in ("truncated", "random", "dicm-garbage", "readme.txt", "photo.jpg", "dangling"):
        assert f"{file_label(folder, name)}: " in errors
        assert name not in errors  # files are named by number: real names are MRNs and patient names
    assert f"{file_label(folder, 'readme.txt')}: not a DICOM file" in errors
    assert f"{file_label(folder, 'dangling')}: the file disappeared or is a broken link (FileNotFoundError)" in errors
    assert row["files"] == 10  # 2 good, 1 link to a good one, 7 bad
    assert row["files_error"] == 8  # the 7 bad, and the link: a second copy of one instance


def test_a_link_to_a_good_file_is_read_but_a_duplicate_instance_is_not_packed_twice(bad):
    pipe, _, by_folder, _ = bad
    errors = by_folder[make_study(1).folder]["errors"]
    label = file_label(pipe.input / make_study(1).folder, "link-to-good")
    assert f"{label}: another file in this batch has the same SOPInstanceUID" in errors


@pytest.mark.parametrize(
    "n, words",
    [
        (2, "PatientID (0010,0020) is missing"),
        (3, "AccessionNumber (0008,0050) is missing"),
        (4, "StudyDate (0008,0020) is missing"),
        (5, "2 different patient_id values"),
        (6, "2 different accession values"),
    ],
)
def test_batch_level_problems_are_batch_errors_in_plain_words(bad, n, words):
    _, _, by_folder, _ = bad
    row = by_folder[make_study(n).folder]
    assert row["status"] == "error"
    assert words in row["error"]
    for value in make_study(n).phi() + ["PHIMRNOTHER", "ACCNOTHER"]:
        assert value not in row["error"]


def test_duplicate_sop_instance_uids_keep_one_and_report_the_other(bad):
    _, _, by_folder, _ = bad
    row = by_folder[make_study(7).folder]
    assert row["status"] == "uploaded"
    assert row["files_error"] == 1
    assert "same SOPInstanceUID" in row["errors"]


def test_a_large_multiframe_file_goes_through(bad):
    pipe, _, by_folder, big_size = bad
    row = by_folder[make_study(8).folder]
    assert row["status"] == "uploaded" and row["files_error"] == 0
    assert row["bytes_in"] > big_size


def test_spaces_and_unicode_in_folder_names_are_fine(bad):
    pipe, run, by_folder, _ = bad
    assert by_folder["ACC 9 ünïcode"]["status"] == "uploaded"
    assert "ünïcode" not in run.output


def test_no_error_text_quotes_a_value_or_the_folder(bad):
    pipe, _, by_folder, _ = bad
    text = pipe.metrics().to_csv()
    for n in range(1, 10):
        for value in make_study(n).phi():
            assert value not in text
    assert str(pipe.input) not in text


def test_an_unreadable_file_is_a_file_error(pipe):
    """As root (CI), the run drops the capabilities that let root read any file (setpriv)."""
    import subprocess

    folder = write_study(pipe.input, make_study(1), 2)
    locked = first_file(folder)
    locked.chmod(0)
    command = pipe.command()
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    try:
        proc = subprocess.run(command, cwd=pipe.root, env=pipe.env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        locked.chmod(0o644)
    label = file_label(folder, locked.relative_to(folder).as_posix())
    assert f"{label}: permission denied (PermissionError)" in pipe.metrics().iloc[0]["errors"]


def test_a_batch_folder_that_disappears_mid_run_is_retried_when_back(pipe, configured):
    from sendit_luigi import batches, stages

    folder = write_study(pipe.input, make_study(1), 2)
    [key] = batches.discover()
    b = batches.batch(key)
    settings = read_and_assign(b)
    parked = pipe.root / "parked"
    folder.rename(parked)  # gone between stage 2 and stage 3
    result = stages.anonymize(b, settings)
    assert result["status"] == "error" and result["retryable"] is True
    assert "disappeared" in result["error"]
    parked.rename(folder)
    back = pipe.run()
    assert back.code == 0, back.output
    assert back.ran("Anonymize") == 1 and back.ran("ExtractHeaders") == 0
    assert json.loads((b.dir / "result.json").read_text())["status"] == "done"
    assert len(datasets(pipe.tarballs()[0])) == 2
