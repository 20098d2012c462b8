"""Scenario: one metadata schema. The row stage 3 builds, the local table and BigQuery's schema agree."""

from __future__ import annotations

import json
import typing

from conftest import make_study

from sendit_luigi.records import COLUMNS, METADATA_SCHEMA, MetadataRow
from sendit_luigi.storage.gcs import schema

ADDED_AT_UPLOAD = {"storage_download", "storage_metadataLink", "UploadTime"}


def test_the_row_of_a_study_has_exactly_the_tables_columns(pipe):
    pipe.add(make_study(1), files=2)
    assert pipe.run().code == 0
    [folder] = pipe.batch_dirs().values()
    row = json.loads((folder / "row.json").read_text())
    assert set(row) | ADDED_AT_UPLOAD == set(COLUMNS)
    assert set(typing.get_type_hints(MetadataRow)) == set(row)
    [stored] = pipe.rows()
    assert list(stored) == list(COLUMNS)  # the local table, in the schema's order


def test_bigquery_gets_the_same_columns_with_their_types():
    fields = schema()
    assert [(f.name, f.field_type) for f in fields] == list(METADATA_SCHEMA)
    assert {f.name for f in fields if f.mode == "REQUIRED"} == {"CodedAccessionNumberID", "CodedPatientID"}
