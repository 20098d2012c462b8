"""Coded identifiers: one module per backend, one interface.

A backend turns each batch's original patient id and accession number into a
coded patient id (entity), a coded accession (item) and a date shift in days
(jitter). The anonymize stage reads only the identifiers checkpoint, so it does
not know or care which backend wrote it.

Each backend module has a ``Backend`` class (see the ``Backend`` protocol below):
``assign(requests) -> {batch key: Identifiers | BatchError}`` for a group of batches
at once, so that a remote service is asked once per group. ``[identifiers] backend``
names the module; ``config.backends`` lists them from this folder.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Protocol

from .. import config
from ..errors import BatchError
from ..workdir import Keyed


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


class Backend(Protocol):
    """What an identifiers backend module's ``Backend()`` is."""

    name: str  # recorded in the identifiers checkpoint and the metadata row

    def assign(self, requests: list[StudyRequest]) -> dict[str, Identifiers | BatchError]:
        """Coded ids and a date shift for each batch key, or the error that batch met."""
        ...


def backend_module() -> ModuleType:
    """The configured backend's module, ``identifiers.<name>``."""
    return importlib.import_module(f"{__name__}.{config.identifiers.get().backend}")


def get_backend(hasher: Keyed) -> Backend:
    """The configured backend module's ``Backend``, given its own settings section (``SETTINGS``)."""
    module = backend_module()
    backend: Backend = module.Backend(module.SETTINGS.get(), hasher)
    return backend


__all__ = ["Backend", "BatchError", "Identifiers", "StudyRequest", "get_backend"]
