"""Coded identifiers: one module per backend, one interface.

A backend turns each batch's original patient id and accession number into a
coded patient id (entity), a coded accession (item) and a date shift in days
(jitter). The anonymize stage reads only the identifiers checkpoint, so it does
not know or care which backend wrote it.

Backends implement ``assign(requests) -> {batch key: Identifiers | BatchError}``
for a group of batches at once, so a remote service can be asked once per group.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass

from .. import config
from ..errors import BatchError


@dataclass(frozen=True)
class StudyRequest:
    """What a backend is told about one batch (PHI: never log it)."""

    key: str
    patient_id: str
    accession: str
    birth_date: str  # DICOM DA (YYYYMMDD) or ''
    study_date: str  # DICOM DA of the study (StudyDate, else Series/Content/Acquisition date)


@dataclass(frozen=True)
class Identifiers:
    """The coded values for one batch: what the identifiers checkpoint holds."""

    patient: str
    accession: str
    jitter_days: int
    backend: str

    def to_dict(self) -> dict:
        return asdict(self)


def backend_module():
    """The configured backend's module, ``identifiers.<name>``."""
    return importlib.import_module(f"{__name__}.{config.identifiers.get().backend}")


def get_backend():
    """The configured backend module's ``Backend()``."""
    return backend_module().Backend()


__all__ = ["BatchError", "Identifiers", "StudyRequest", "get_backend"]
