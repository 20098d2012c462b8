"""Scenario: upload to Google Cloud Storage and BigQuery (real clients, local emulators on 127.0.0.1)."""

from __future__ import annotations

import itertools
import json

import pytest
from conftest import Pipeline, make_study
from emulators import BigQueryEmulator, FaultyProxy, GcsEmulator
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from sendit_luigi.batches import shard_of

COUNTER = itertools.count()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud")
    gcs = GcsEmulator(root / "gcs").start()
    bq = BigQueryEmulator(root / "bq").start()
    yield gcs, bq
    gcs.stop()
    bq.stop()


class Cloud:
    def __init__(self, gcs, bq, bucket: str, collection: str):
        self.gcs_emulator, self.bq_emulator = gcs, bq
        self.bucket, self.collection = bucket, collection
        self.gcs = storage.Client(
            project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs.endpoint}
        )
        self.bq = bigquery.Client(
            project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": bq.endpoint}
        )

    def blobs(self) -> dict:
        return {b.name: b for b in self.gcs.list_blobs(self.bucket)}

    def plant_other_bytes(self, batch_dir) -> str:
        """Put somebody else's bytes where the batch's tarball will go; return the object name."""
        result = json.loads((batch_dir / "result.json").read_text())
        patient = json.loads((batch_dir / "row.json").read_text())["CodedPatientID"]
        name = f"Collection/{self.collection}/Entity/{patient}/{result['tarball_name']}"
        self.gcs.bucket(self.bucket).blob(name).upload_from_string(b"somebody else's bytes")
        return name

    def rows(self) -> list[dict]:
        table = f"test-project.{self.collection}.dicom"
        return [dict(r) for r in self.bq.list_rows(table)]


@pytest.fixture
def gcs_pipe(pipe: Pipeline, cloud) -> tuple[Pipeline, Cloud]:
    n = next(COUNTER)
    c = Cloud(*cloud, bucket=f"sendit-test-{n}", collection=f"IRB_{n}")
    c.gcs.create_bucket(c.bucket)
    pipe.settings.update(
        {
            "storage.backend": "gcs",
            "storage.bucket": c.bucket,
            "storage.project": "test-project",
            "storage.collection": c.collection,
            "storage.gcs_endpoint": c.gcs_emulator.endpoint,
            "storage.bigquery_endpoint": c.bq_emulator.endpoint,
            "storage.credentials": "anonymous",
            "storage.retry_seconds": "3",
            "storage.backoff": "0.1",
        }
    )
    return pipe, c


def test_objects_land_with_sendit_names_and_the_same_bytes_and_rows_land_once(gcs_pipe):
    pipe, c = gcs_pipe
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=2)
    run = pipe.run()
    assert run.code == 0, run.output
    blobs = c.blobs()
    assert len(blobs) == 3
    work = {
        json.loads((d / "result.json").read_text())["tarball_name"]: d / "study.tar.gz"
        for d in pipe.batch_dirs().values()
    }
    for name, blob in blobs.items():
        parts = name.split("/")
        assert parts[:3] == ["Collection", c.collection, "Entity"] and parts[4].startswith(parts[3] + "_")
        assert blob.content_type == "application/gzip"
        assert blob.download_as_bytes() == work[parts[4]].read_bytes()
    rows = c.rows()
    assert len(rows) == 3
    assert {r["storage_download"] for r in rows} == {f"gs://{c.bucket}/{n}" for n in blobs}
    for row in rows:
        assert row["DicomHeader"]["PatientIdentityRemoved"] == "YES"
        assert row["ImageCount"] == 2 and row["SizeBytes"] > 0 and row["UploadTime"] is not None
    schema = {f.name: f.field_type for f in c.bq.get_table(f"test-project.{c.collection}.dicom").schema}
    assert schema["DicomHeader"] == "JSON" and schema["ImageCount"] == "INTEGER"


def test_a_rerun_adds_nothing(gcs_pipe):
    pipe, c = gcs_pipe
    pipe.add(make_study(1), files=1)
    assert pipe.run().code == 0
    generations = {n: b.generation for n, b in c.blobs().items()}
    again = pipe.run()
    assert again.code == 0 and "ran successfully" not in again.output
    assert {n: b.generation for n, b in c.blobs().items()} == generations
    assert len(c.rows()) == 1


def test_an_upload_that_fails_half_way_resumes_with_nothing_lost_or_doubled(gcs_pipe):
    pipe, c = gcs_pipe
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1)
    c.bq_emulator.stop()  # objects can go up, rows cannot
    try:
        failed = pipe.run()
    finally:
        c.bq_emulator.start()
    assert failed.code != 0
    assert len(c.blobs()) == 3
    assert all(not (d / "uploaded.json").exists() for d in pipe.batch_dirs().values())
    assert "upload failed" in pipe.cli("status", "--errors").stdout + " ".join(
        json.loads((d / "upload_error.json").read_text())["error"] for d in pipe.batch_dirs().values()
    )
    generations = {n: b.generation for n, b in c.blobs().items()}
    resumed = pipe.run()
    assert resumed.code == 0, resumed.output
    assert resumed.ran("Anonymize") == 0
    assert {n: b.generation for n, b in c.blobs().items()} == generations  # not uploaded again
    rows = c.rows()
    assert len(rows) == 3 and len({r["CodedAccessionNumberID"] for r in rows}) == 3


@pytest.mark.parametrize("batches", [0, 1, 9, 25])
def test_the_upload_split_works_for_any_number_of_batches(gcs_pipe, batches):
    pipe, c = gcs_pipe
    pipe.settings["sendit.group_size"] = "10"
    for n in range(batches):
        pipe.add(make_study(n), files=1, nested=False)
    run = pipe.run(workers=2)
    assert run.code == 0, run.output
    assert len(c.blobs()) == batches
    dirs = list(pipe.batch_dirs().values()) if batches else []
    assert sum((d / "uploaded.json").exists() for d in dirs) == batches
    shards_with_work = {shard_of(d.name, 10) for d in dirs}
    assert run.ran("UploadShard") == len(shards_with_work)  # one task per shard that had batches
    if batches >= 9:
        assert len(shards_with_work) > 1
    if batches:
        assert len(c.rows()) == batches


def test_an_object_with_other_bytes_is_never_overwritten(gcs_pipe):
    pipe, c = gcs_pipe
    pipe.add(make_study(1), files=1)
    assert pipe.run(task="ProcessBatches").code == 0
    [batch_dir] = pipe.batch_dirs().values()
    name = c.plant_other_bytes(batch_dir)
    run = pipe.run()
    assert run.code != 0
    assert c.gcs.bucket(c.bucket).blob(name).download_as_bytes() == b"somebody else's bytes"
    assert "different bytes" in json.loads((batch_dir / "upload_error.json").read_text())["error"]


def test_rows_go_in_one_lookup_and_one_insert_per_group_of_studies(gcs_pipe):
    pipe, c = gcs_pipe
    proxy = FaultyProxy(c.bq_emulator.endpoint)
    try:
        pipe.settings.update(
            {"storage.bigquery_endpoint": proxy.endpoint, "upload.workers": "1", "upload.rows_per_request": "5"}
        )
        for n in range(12):
            pipe.add(make_study(n), files=1, nested=False)
        run = pipe.run()
    finally:
        proxy.close()
    assert run.code == 0, run.output
    inserts = [path for method, path in proxy.requests if path.split("?")[0].endswith("/insertAll")]
    queries = [path for method, path in proxy.requests if method == "POST" and "/jobs" in path]
    assert len(inserts) == 3  # 12 studies in groups of 5: 5 + 5 + 2
    # one lookup a group, and one more for the first: it found no table, which was then created, once
    assert len(queries) == 4
    assert len([p for m, p in proxy.requests if m == "POST" and p.split("?")[0].endswith("/tables")]) == 1
    rows = c.rows()
    assert len(rows) == 12 and len({r["CodedAccessionNumberID"] for r in rows}) == 12


def test_one_object_that_cannot_go_up_does_not_hold_back_the_others_in_its_group(gcs_pipe):
    pipe, c = gcs_pipe
    pipe.settings["upload.workers"] = "1"
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1)
    assert pipe.run(task="ProcessBatches").code == 0
    dirs = list(pipe.batch_dirs().values())
    c.plant_other_bytes(dirs[0])
    row = json.loads((dirs[0] / "row.json").read_text())
    run = pipe.run()
    assert run.code != 0
    assert "different bytes" in json.loads((dirs[0] / "upload_error.json").read_text())["error"]
    assert [(d / "uploaded.json").exists() for d in dirs] == [False, True, True]
    coded = {r["CodedAccessionNumberID"] for r in c.rows()}
    assert len(coded) == 2 and row["CodedAccessionNumberID"] not in coded


def test_a_missing_bucket_is_a_clear_permanent_error(gcs_pipe):
    pipe, c = gcs_pipe
    pipe.settings["storage.bucket"] = "no-such-bucket"
    pipe.add(make_study(1), files=1)
    run = pipe.run()
    assert run.code != 0
    [batch_dir] = pipe.batch_dirs().values()
    assert "does [storage] bucket = no-such-bucket exist" in (batch_dir / "upload_error.json").read_text()


def test_a_missing_setting_stops_the_run_before_any_work_naming_it(gcs_pipe):
    pipe, c = gcs_pipe
    pipe.settings["storage.bucket"] = ""
    pipe.add(make_study(1), files=1)
    run = pipe.run()
    assert run.code != 0
    assert "[storage] bucket is not set" in run.output
    assert not (pipe.work / "batches").exists() or not any((pipe.work / "batches").rglob("result.json"))


@pytest.mark.parametrize("status", [503, 429])
def test_transient_errors_are_retried_with_backoff(gcs_pipe, status):
    pipe, c = gcs_pipe
    proxy = FaultyProxy(c.gcs_emulator.endpoint, faults=2, status=status)
    try:
        pipe.settings["storage.gcs_endpoint"] = proxy.endpoint
        pipe.add(make_study(1), files=1)
        run = pipe.run()
    finally:
        proxy.close()
    assert run.code == 0, run.output
    assert proxy.failed == 2 and proxy.seen > 2
    assert len(c.blobs()) == 1 and len(c.rows()) == 1


def test_a_bigquery_outage_mid_upload_ends_within_the_retry_bound(gcs_pipe, configured):
    """Seen: google-cloud-bigquery retried the query job on its own (job_retry) for 10-40 minutes."""
    import threading

    import luigi.configuration

    from sendit_luigi import config
    from sendit_luigi.storage.gcs import Store

    pipe, c = gcs_pipe
    proxy = FaultyProxy(c.bq_emulator.endpoint)
    pipe.settings["storage.bigquery_endpoint"] = proxy.endpoint
    pipe.write_cfg()
    luigi.configuration.LuigiConfigParser._instance = None
    config.reset()
    store = Store(config.storage.get())
    store.ensure_table()
    proxy.faults = 10**9  # from now on every request gets a 503: BigQuery is down
    outcome: dict = {}

    def call():
        try:
            store.existing(["A1"])
        except Exception as exc:  # noqa: BLE001 - what it raises is what the test looks at
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(90)  # [storage] retry_seconds = 3: a bounded call has long given up by then
    proxy.close()
    assert not worker.is_alive(), "still retrying 90 s after BigQuery went down"
    assert "error" in outcome


CUTS = {
    # where the connection is cut, as (which proxy, fault, request matcher)
    "existence-query": ("bq", "drop", lambda method, path: "/queries" in path or "/jobs" in path),
    "row-insert": ("bq", "drop", lambda method, path: "/insertAll" in path),
    "object-upload": ("gcs", "drop", lambda method, path: path.startswith("/upload/")),
    "insert-reply-lost": ("bq", "lose", lambda method, path: "/insertAll" in path),
    "upload-reply-lost": ("gcs", "lose", lambda method, path: path.startswith("/upload/")),
}


@pytest.mark.parametrize("point", CUTS)
def test_a_connection_cut_at_any_upload_call_ends_the_run_in_bounded_time_and_a_rerun_completes(gcs_pipe, point):
    pipe, c = gcs_pipe
    which, fault, matches = CUTS[point]
    pipe.add(make_study(1), files=1, nested=False)
    pipe.add(make_study(2), files=1, nested=False)
    upstream = c.bq_emulator if which == "bq" else c.gcs_emulator
    lost: list[str] = []

    def cut(method: str, path: str) -> str:
        """Every matching request is dropped (an outage at that call); only the first reply is lost."""
        if not matches(method, path) or (fault == "lose" and lost):
            return ""
        lost.append(path)
        return fault

    proxy = FaultyProxy(upstream.endpoint, cut=cut)
    pipe.settings[f"storage.{'bigquery' if which == 'bq' else 'gcs'}_endpoint"] = proxy.endpoint
    pipe.settings["upload.workers"] = "1"
    try:
        cut = pipe.run(timeout=120)  # [storage] retry_seconds = 3: each call gives up within seconds
    finally:
        proxy.close()
    assert proxy.cuts > 0, f"no request matched {point}"
    if fault == "lose":  # the work was done, only the reply is lost: the retry finds it there, adds nothing
        assert cut.code == 0, cut.output
        assert len(c.blobs()) == 2 and len(c.rows()) == 2
    else:  # the service is unreachable at that call: both batches fail, in our words, and the run says so
        assert cut.code != 0 and "uploads failed" in cut.output
        errors = [json.loads(p.read_text())["error"] for p in pipe.work.glob("batches/*/upload_error.json")]
        assert len(errors) == 2 and all(errors), errors
        assert set(pipe.metrics()["status"]) == {"done processing"}  # the metrics are written all the same

    pipe.settings["storage.gcs_endpoint"] = c.gcs_emulator.endpoint  # the outage is over
    pipe.settings["storage.bigquery_endpoint"] = c.bq_emulator.endpoint
    again = pipe.run()
    assert again.code == 0, again.output
    assert len(c.blobs()) == 2 and len(c.rows()) == 2  # nothing lost, nothing twice (also after a lost reply)
    assert set(pipe.metrics()["status"]) == {"uploaded"}


def test_a_shard_sends_several_tarballs_at_once(gcs_pipe):
    """Seen: one upload at a time per shard, although uploading waits on the network."""
    import threading

    pipe, c = gcs_pipe
    for n in range(1, 5):
        pipe.add(make_study(n), files=1, nested=False)
    arrived: list[str] = []
    both = threading.Event()

    def hold_first_upload(method: str, path: str) -> str:
        if path.startswith("/upload/"):
            arrived.append(path)
            if len(arrived) >= 2:
                both.set()
            both.wait(10)  # the first upload is held until a second one is in flight (10 s at most)
        return ""

    proxy = FaultyProxy(c.gcs_emulator.endpoint, cut=hold_first_upload)
    pipe.settings.update({"storage.gcs_endpoint": proxy.endpoint, "upload.workers": "1", "upload.threads": "4"})
    try:
        run = pipe.run()
    finally:
        proxy.close()
    assert run.code == 0, run.output
    assert both.is_set(), "a second tarball was not sent while the first was in flight"
    assert len(c.blobs()) == 4 and len(c.rows()) == 4
