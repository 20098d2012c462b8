"""Scenarios: studies without an AccessionNumber or a PatientID ([sendit] study_id_from, patient_id_from)."""

from __future__ import annotations

import json

from conftest import Pipeline, make_study
from dasher_server import DasherServer
from test_malformed_input import rewrite

from sendit_luigi.sample_data import write_study


def add_without(pipe: Pipeline, n: int, *keywords: str) -> None:
    folder = write_study(pipe.input, make_study(n), 2, nested=False)
    for path in folder.iterdir():
        rewrite(path, **dict.fromkeys(keywords))


def outcome(pipe: Pipeline, n: int) -> tuple[dict, dict]:
    """(result.json, identifiers.json) of study ``n``'s batch."""
    d = pipe.batch_dirs()[make_study(n).folder]
    return json.loads((d / "result.json").read_text()), json.loads((d / "identifiers.json").read_text())


def test_by_default_a_study_without_an_accession_number_is_coded_from_its_study_uid(pipe):
    add_without(pipe, 1, "AccessionNumber")
    pipe.add(make_study(2), files=1, nested=False)  # has one: coded from it, as always
    add_without(pipe, 3, "AccessionNumber", "StudyInstanceUID")  # neither: a clear error
    assert pipe.run().code == 0
    assert outcome(pipe, 1)[0]["status"] == "done"
    assert outcome(pipe, 2)[0]["status"] == "done"
    result, _ = outcome(pipe, 3)
    assert result["status"] == "error"
    assert "AccessionNumber (0008,0050) and StudyInstanceUID (0020,000D) are both missing" in result["error"]
    assert len(pipe.rows()) == 2


def test_study_id_from_accession_refuses_a_study_without_one_and_names_the_setting(pipe):
    add_without(pipe, 1, "AccessionNumber")
    pipe.settings["sendit.study_id_from"] = "accession"
    assert pipe.run().code == 0
    result, _ = outcome(pipe, 1)
    assert result["status"] == "error" and "[sendit] study_id_from" in result["error"]
    assert not pipe.rows()


def test_study_id_from_study_uid_codes_two_studies_with_one_accession_apart(pipe):
    pipe.add(make_study(1), files=1, nested=False)
    pipe.add(make_study(2, accession=make_study(1).accession), files=1, nested=False)  # another study, same accession
    pipe.settings["sendit.study_id_from"] = "study_uid"
    assert pipe.run().code == 0
    first, second = outcome(pipe, 1)[1], outcome(pipe, 2)[1]
    assert first["status"] == second["status"] == "ok"
    assert first["accession"] != second["accession"]
    assert len(pipe.rows()) == 2


def test_a_study_without_a_patient_id_is_an_error_unless_the_fallback_is_set(pipe):
    add_without(pipe, 1, "PatientID")
    add_without(pipe, 2, "PatientID")
    assert pipe.run().code == 0
    result, _ = outcome(pipe, 1)
    assert result["status"] == "error" and "[sendit] patient_id_from" in result["error"]

    pipe.settings["sendit.patient_id_from"] = "patient_id_then_study"
    for d in pipe.batch_dirs().values():  # make both batches run again from stage 2
        (d / "identifiers.json").unlink()
        (d / "result.json").unlink()
    assert pipe.run().code == 0
    (first, ids1), (second, ids2) = outcome(pipe, 1), outcome(pipe, 2)
    assert first["status"] == second["status"] == "done"
    assert ids1["patient"] != ids2["patient"]  # each study its own patient: no made-up link
    assert len(pipe.rows()) == 2


def test_dasher_gets_a_study_uid_as_an_item_id_it_accepts(pipe, tmp_path):
    add_without(pipe, 1, "AccessionNumber")
    with DasherServer() as server:
        pipe.settings.update(
            {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.secrets_file": str(server.write_secrets(tmp_path / "secrets.json")),
            }
        )
        assert pipe.run().code == 0
    assert not server.problems  # the item id passed DASHER's id rules (no dots)
    items = [item["id"] for body in server.requests for e in body["identifiers"] for item in e["items"]]
    assert len(items) == 1 and items[0].startswith("UID-") and "." not in items[0]
    assert outcome(pipe, 1)[0]["status"] == "done"
