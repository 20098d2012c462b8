"""sendit-luigi: de-identify archives of DICOM studies into cloud storage, as a Luigi pipeline.

``luigi --module sendit_luigi ProcessAll`` runs everything; ``tasks.py`` is the DAG.
"""

from __future__ import annotations

from .tasks import (
    Anonymize,
    ExportMetrics,
    ExtractHeaders,
    GetIdentifiers,
    ProcessAll,
    ProcessBatches,
    ProcessChunk,
    UploadAll,
    UploadShard,
)

__all__ = [
    "Anonymize",
    "ExportMetrics",
    "ExtractHeaders",
    "GetIdentifiers",
    "ProcessAll",
    "ProcessBatches",
    "ProcessChunk",
    "UploadAll",
    "UploadShard",
]
