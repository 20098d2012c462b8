"""Scenario: PHI planted in every place it hides; none of it may leave the work dir."""

from __future__ import annotations

import json

import pytest
from conftest import Pipeline, datasets, every_output_byte
from phi_seed import write_seeded_study


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    pipe = Pipeline(tmp_path_factory.mktemp("seeded"))
    studies = {
        name: write_seeded_study(pipe.input / name, tag) for name, tag in (("ACCSEED001", "ONE"), ("ACCSEED002", "TWO"))
    }
    run = pipe.run()
    assert run.code == 0, run.output
    return pipe, studies, run


def test_every_seeded_file_is_packed(seeded):
    pipe, studies, _ = seeded
    assert len(pipe.tarballs()) == 2
    assert sum(len(datasets(t)) for t in pipe.tarballs()) == 6
    assert (pipe.metrics()["files_error"] == 0).all()


def test_no_seeded_value_in_any_output_byte(seeded):
    pipe, studies, run = seeded
    planted = [v for s in studies.values() for v in s.values + s.uids] + list(studies)
    planted += ["20170304", "19500607", "20170815", "ELM STREET"]
    outputs = every_output_byte(pipe) + [("luigi log", run.output.encode())]
    for name, data in outputs:
        for value in planted:
            assert value.encode() not in data, f"{value} in {name}"


def test_references_still_point_at_the_instances_they_pointed_at(seeded):
    pipe, _, _ = seeded
    for tarball in pipe.tarballs():
        by_number = {int(ds.InstanceNumber): ds for ds in datasets(tarball).values()}
        assert len({ds.FrameOfReferenceUID for ds in by_number.values()}) == 1
        assert len({ds.SeriesInstanceUID for ds in by_number.values()}) == 1
        for number, ds in by_number.items():
            if number > 1:
                ref = ds.ReferencedImageSequence[0]
                assert ref.ReferencedSOPInstanceUID == by_number[number - 1].SOPInstanceUID
                assert ref.ReferencedSOPClassUID == ds.SOPClassUID


def test_the_metadata_row_carries_only_coded_values(seeded):
    pipe, studies, _ = seeded
    for row in pipe.rows():
        text = json.dumps(row)
        for s in studies.values():
            for value in s.values + s.uids:
                assert value not in text
        assert json.loads(row["DicomHeader"])["PatientID"] == row["CodedPatientID"]
