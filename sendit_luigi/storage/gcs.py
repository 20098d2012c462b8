"""The cloud storage backend: tarballs to Google Cloud Storage, metadata rows to BigQuery.

``[storage] backend = gcs``, with the official clients (google-cloud-storage
and google-cloud-bigquery 3.x). Credentials come from Application Default
Credentials or ``GOOGLE_APPLICATION_CREDENTIALS``; ``gcs_endpoint`` and
``bigquery_endpoint`` (or the client's own ``STORAGE_EMULATOR_HOST``) point at
an emulator or a private endpoint.

Idempotent by construction, so a rerun after a crash at any point neither
loses nor duplicates anything:

* an object is written with ``if_generation_match=0`` (only if absent); when it
  exists already, its MD5 must equal the tarball's, else the batch fails rather
  than overwrite different bytes;
* rows go in groups: one query finds which coded accessions have a row
  already, and one streaming insert adds the others, each with its accession
  as the ``insertId``.

Transient errors (429, 5xx, dropped connections) are retried with exponential
backoff; permanent ones (403, a missing bucket) fail the batch with a message
naming the setting to check.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.api_core import exceptions
from google.cloud import bigquery, storage  # type: ignore[attr-defined]  # storage has no type information
from google.cloud.bigquery import DEFAULT_RETRY as BQ_RETRY
from google.cloud.storage.retry import DEFAULT_RETRY as GCS_RETRY

from .. import config
from ..errors import BatchError
from ..records import Placed, ResultRecord
from . import METADATA_SCHEMA, md5_digest, object_name

RESUMABLE_ABOVE = 8 * 1024 * 1024  # bytes; larger tarballs go up in resumable chunks


# What BigQuery's own schema adds to ``METADATA_SCHEMA``: required columns and descriptions.
REQUIRED = {"CodedAccessionNumberID", "CodedPatientID"}
DESCRIPTIONS = {
    "storage_download": "gs:// address of the study tarball",
    "storage_metadataLink": "GCS API link of the object",
    "StudyDate": "shifted study date, YYYYMMDD",
    "DicomHeader": "de-identified header fields shared by every file of the study",
}


def _field(name: str, kind: str) -> bigquery.SchemaField:
    mode = "REQUIRED" if name in REQUIRED else "NULLABLE"
    if name in DESCRIPTIONS:
        return bigquery.SchemaField(name, kind, mode=mode, description=DESCRIPTIONS[name])
    return bigquery.SchemaField(name, kind, mode=mode)


def schema() -> list[bigquery.SchemaField]:
    """The typed BigQuery schema of the metadata table (``records.METADATA_SCHEMA``)."""
    return [_field(name, kind) for name, kind in METADATA_SCHEMA]


def check_settings(cfg: config.storage) -> None:
    """Fail with the name of the first missing setting (sendit silently skipped the upload)."""
    for name in ("bucket", "project", "collection"):
        if not getattr(cfg, name):
            raise ValueError(f"[storage] {name} is not set, and backend = gcs needs it")


def _md5_b64(path: Path) -> str:
    return base64.b64encode(md5_digest(path)).decode()  # GCS reports MD5 in base64


class Store:
    """``[storage] backend = gcs``."""

    def __init__(self, cfg: config.storage, min_free_gb: float = 0.0) -> None:  # the bucket's space is Google's
        check_settings(cfg)
        self.cfg = cfg
        credentials = None
        if cfg.credentials == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        gcs_options = {"api_endpoint": cfg.gcs_endpoint} if cfg.gcs_endpoint else None
        bq_options = {"api_endpoint": cfg.bigquery_endpoint} if cfg.bigquery_endpoint else None
        self.gcs = storage.Client(project=cfg.project, credentials=credentials, client_options=gcs_options)
        self.bq = bigquery.Client(project=cfg.project, credentials=credentials, client_options=bq_options)
        # Each client's own retry policy (it knows which of its errors are transient),
        # with our backoff and our limit on the total time.
        delay = {"initial": cfg.backoff, "multiplier": 2.0, "maximum": max(cfg.backoff * 16, 1.0)}
        self.retry = GCS_RETRY.with_delay(**delay).with_timeout(cfg.retry_seconds)
        self.bq_retry = BQ_RETRY.with_delay(**delay).with_timeout(cfg.retry_seconds)
        # No request may wait longer than the whole budget (a connection that stalls without closing),
        # and BigQuery's own job retry is off: every call ends within about twice [storage] retry_seconds.
        self.timeout = cfg.retry_seconds
        self.table_id = f"{cfg.project}.{cfg.dataset_name()}.{cfg.table}"

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """Turn the two permanent errors a user can fix into messages naming the setting to check."""
        try:
            yield
        except exceptions.Forbidden as exc:
            raise BatchError(
                f"permission denied by Google Cloud ({exc.code}); check the credentials' roles "
                f"on [storage] bucket / dataset"
            ) from None
        except exceptions.NotFound as exc:
            raise BatchError(
                f"not found ({exc.code}): does [storage] bucket = {self.cfg.bucket} exist "
                f"in [storage] project = {self.cfg.project}?"
            ) from None

    # -- objects ------------------------------------------------------------

    def put_object(self, tarball: Path, result: ResultRecord, replaces: dict | None = None) -> Placed:
        """Upload the study tarball unless an object with the same bytes is there already.

        ``replaces`` (name and base64 MD5 of what an earlier recipe uploaded) is
        the one object that may be overwritten, or deleted when the name changed.
        """
        name = object_name(result, self.cfg.collection)
        with self.explained():
            old = self._replaceable(replaces)
            if old is not None and old.name == name:
                old.delete(if_generation_match=old.generation, retry=self.retry, timeout=self.timeout)
            blob = self._upload(tarball, name)
            if old is not None and old.name != name:
                old.delete(if_generation_match=old.generation, retry=self.retry, timeout=self.timeout)
        return {
            "object": name,
            "md5": blob.md5_hash,
            "crc32c": blob.crc32c,
            "generation": blob.generation,
            "bytes": blob.size,
            "backend": "gcs",
            "download": f"gs://{self.cfg.bucket}/{name}",
            "link": blob.self_link or "",
        }

    def _replaceable(self, replaces: dict | None) -> Any:
        """The object ``replaces`` names, if it is still there with the bytes recorded."""
        if not replaces:
            return None
        blob = self.gcs.bucket(self.cfg.bucket).get_blob(replaces["object"], retry=self.retry, timeout=self.timeout)
        return blob if blob is not None and blob.md5_hash == replaces["md5"] else None

    def _upload(self, tarball: Path, name: str) -> Any:
        bucket = self.gcs.bucket(self.cfg.bucket)
        size = tarball.stat().st_size
        blob = bucket.blob(name, chunk_size=RESUMABLE_ABOVE if size > RESUMABLE_ABOVE else None)
        local_md5 = _md5_b64(tarball)
        try:
            blob.upload_from_filename(
                str(tarball),
                content_type="application/gzip",
                if_generation_match=0,
                checksum="md5",
                retry=self.retry,
                timeout=self.timeout,
            )
        except exceptions.PreconditionFailed:
            pass  # already there: from an earlier, interrupted run, or a different study
        blob.reload(retry=self.retry, timeout=self.timeout)
        if blob.md5_hash != local_md5:
            raise BatchError(
                f"{name.rsplit('/', 1)[-1]} already exists in the bucket with different bytes; not overwritten"
            )
        if blob.size != size:
            raise BatchError("the uploaded object's size differs from the tarball's; not marked uploaded")
        return blob

    # -- rows ---------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the dataset and the table if they are missing."""
        dataset = bigquery.Dataset(f"{self.cfg.project}.{self.cfg.dataset_name()}")
        dataset.location = self.cfg.location
        self.bq.create_dataset(dataset, exists_ok=True, retry=self.bq_retry, timeout=self.timeout)
        self.bq.create_table(
            bigquery.Table(self.table_id, schema=schema()), exists_ok=True, retry=self.bq_retry, timeout=self.timeout
        )

    def existing(self, accessions: list[str]) -> set[str]:
        """Which of these coded accessions have a row already (one query)."""
        job = self.bq.query(
            f"SELECT CodedAccessionNumberID FROM `{self.table_id}` WHERE CodedAccessionNumberID IN UNNEST(@ids)",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ArrayQueryParameter("ids", "STRING", accessions)]
            ),
            retry=self.bq_retry,
            job_retry=None,  # else the client retries the job by itself for up to 600 s, unbounded by ours
            timeout=self.timeout,
        )
        rows = job.result(retry=self.bq_retry, job_retry=None, timeout=self.cfg.retry_seconds)
        return {r["CodedAccessionNumberID"] for r in rows}

    def insert_rows(self, rows: list[dict]) -> None:
        """Insert the rows whose coded accession is not in the table yet, in one streaming insert.

        A request whose reply is lost may still have stored its rows, so a failed
        insert is never simply sent again: each attempt first looks up which rows
        are there and sends only the others (``bq_retry`` around the pair, the
        insert itself without a retry of its own). The accession is also each
        row's ``insertId``, BigQuery's own best-effort guard against doubles.
        """
        with self.explained():
            try:
                self.bq_retry(self._insert_missing)(rows)
            except exceptions.NotFound:
                # No table (or dataset) yet: created by the first insert that needs it. Checking
                # before every insert cost each upload shard two more round trips.
                self.ensure_table()
                self.bq_retry(self._insert_missing)(rows)

    def _insert_missing(self, rows: list[dict]) -> None:
        there = self.existing([r["CodedAccessionNumberID"] for r in rows])
        now = dt.datetime.now(dt.UTC).isoformat()
        new = [dict(r, UploadTime=now) for r in rows if r["CodedAccessionNumberID"] not in there]
        if not new:
            return
        errors = self.bq.insert_rows_json(
            self.table_id,
            new,
            row_ids=[r["CodedAccessionNumberID"] for r in new],
            retry=None,  # type: ignore[arg-type]  # see insert_rows: retried only together with the lookup
            timeout=self.timeout,
        )
        if errors:
            raise BatchError(f"BigQuery refused {len(errors)} of {len(new)} metadata rows: {errors[0].get('errors')}")
