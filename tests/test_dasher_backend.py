"""Scenario: coded ids from DASHER (som's real client against a loopback DASHER-compatible server)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from conftest import Pipeline, datasets, make_study
from dasher_server import DasherServer, jitter, suid


@pytest.fixture
def dasher(pipe: Pipeline, tmp_path):
    with DasherServer(slow=6.0) as server:
        pipe.settings.update(
            {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.study": "IRB-Test",
                "dasher.secrets_file": str(server.write_secrets(tmp_path / "secrets.json")),
                "dasher.retries": "1",
                "dasher.backoff": "0.05",
                "dasher.timeout": "2.5",
            }
        )
        yield pipe, server


def add(pipe: Pipeline, *numbers: int):
    for n in numbers:
        pipe.add(make_study(n, patient=n if n != 2 else 1), files=2)


def test_process_all_gets_its_ids_from_dasher(dasher):
    pipe, server = dasher
    add(pipe, 1, 2, 3)
    # one worker: with two, a run this small splits stage 1 between them, and each half calls DASHER
    run = pipe.run(workers=1)
    assert run.code == 0, run.output
    assert server.problems == []
    assert server.paths and all(p == "/v1/uid/irb-test" for p in server.paths)
    assert len(server.requests) == 1  # three batches, one request (group_size = 3)
    [body] = server.requests
    assert len(body["identifiers"]) == 2  # patient 1 has two studies: one entity, two items
    assert sorted(len(e["items"]) for e in body["identifiers"]) == [1, 2]
    for tarball in pipe.tarballs():
        for ds in datasets(tarball).values():
            study = next(
                s
                for s in (make_study(1), make_study(2, patient=1), make_study(3))
                if suid("I", s.accession) == ds.AccessionNumber
            )
            assert ds.PatientID == suid("E", study.patient_id)
            days = jitter(study.patient_id)
            expected = dt.datetime.strptime(study.study_date, "%Y%m%d") + dt.timedelta(days=days)
            assert ds.StudyDate == expected.strftime("%Y%m%d")
    assert {r["IdentifiersBackend"] for r in pipe.rows()} == {"dasher"}


def test_a_rerun_sends_no_request(dasher):
    pipe, server = dasher
    add(pipe, 1, 2)
    assert pipe.run().code == 0
    sent = len(server.paths)
    assert pipe.run().code == 0
    assert len(server.paths) == sent


def test_an_expired_token_is_refreshed_once_and_the_call_retried(dasher):
    pipe, server = dasher
    add(pipe, 1)
    server.script = ["401"]
    assert pipe.run().code == 0
    assert server.refreshes == 1
    secrets = json.loads(Path(pipe.settings["dasher.secrets_file"]).read_text())
    assert secrets["accessToken"] == "access-2"  # som wrote the new token back
    assert pipe.metrics().iloc[0]["status"] == "uploaded"


@pytest.mark.parametrize(
    "script, words",
    [
        (["500", "500"], "DASHER answered HTTP 500 after 2 attempts"),
        (["malformed"], "body that is not JSON"),
        (["timeout", "timeout"], "DASHER did not answer (ReadTimeout) after 2 attempts"),
        (["401", "401"], "refused the credentials (HTTP 401) even after refreshing"),
    ],
)
def test_each_failure_is_that_batchs_retryable_error_and_others_go_on(dasher, script, words):
    pipe, server = dasher
    pipe.settings["sendit.group_size"] = "1"
    add(pipe, 1, 3, 4)
    server.script = list(script)
    run = pipe.run(workers=1)
    assert run.code == 0, run.output
    df = pipe.metrics()
    failed = df[df["status"] == "error"]
    assert len(failed) == 1 and words in failed.iloc[0]["error"]
    assert (df["status"] == "uploaded").sum() == 2
    again = pipe.run(workers=1)  # the service is fine now: the failed batch is retried
    assert again.code == 0
    assert (pipe.metrics()["status"] == "uploaded").sum() == 3


def test_input_dasher_would_reject_is_an_error_naming_the_field_and_nothing_is_sent_for_it(dasher):
    pipe, server = dasher
    pipe.add(make_study(1, patient_id="PHI/SLASH*ID"), files=1)
    pipe.add(make_study(2, birth_date="NOTADATE"), files=1)
    pipe.add(make_study(3), files=1)
    assert pipe.run().code == 0
    df = pipe.metrics().set_index("status")
    errors = " ".join(pipe.metrics()["error"])
    assert "PatientID has characters DASHER does not accept" in errors
    assert "PatientBirthDate is missing or not a valid date" in errors
    assert "PHI/SLASH*ID" not in errors
    assert (pipe.metrics()["status"] == "uploaded").sum() == 1
    sent = json.dumps(server.requests)
    assert "PHI/SLASH*ID" not in sent and "PHI\\/SLASH" not in sent and server.problems == []
    assert len(df) == 3


def test_a_missing_secrets_file_is_a_clear_error(dasher):
    pipe, server = dasher
    pipe.settings["dasher.secrets_file"] = str(pipe.root / "nope.json")
    add(pipe, 1)
    assert pipe.run().code == 0
    assert "DASHER secrets file not found" in pipe.metrics().iloc[0]["error"]
    assert server.paths == []


def test_the_secrets_file_is_named_to_som_only_during_its_calls(tmp_path, monkeypatch):
    """som reads its secrets' path from the environment; the backend leaves the operator's own value as it was."""
    from sendit_luigi import config
    from sendit_luigi.identifiers import Identifiers, StudyRequest, dasher

    theirs = str(tmp_path / "the-operators-own.json")
    monkeypatch.setenv("STANFORD_CLIENT_SECRETS", theirs)
    with DasherServer() as server:
        settings = config.dasher(
            base_url=server.base,
            study="IRB-Test",
            secrets_file=str(server.write_secrets(tmp_path / "secrets.json")),
            retries=1,
            backoff=0.05,
            timeout=2.5,
        )
        server.script = ["401"]  # som refreshes the token: it reads the path a second time
        request = StudyRequest("k1", "MRN1", "ACC1", "19700101", "20200101")
        results = dasher.Backend(settings).assign([request])
    assert isinstance(results["k1"], Identifiers), results
    assert server.refreshes == 1
    assert os.environ["STANFORD_CLIENT_SECRETS"] == theirs
