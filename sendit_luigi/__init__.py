"""sendit-luigi: de-identify archives of DICOM studies into cloud storage, as a Luigi pipeline.

``luigi --module sendit_luigi ProcessAll`` runs everything; ``tasks.py`` is the DAG.
"""

from __future__ import annotations

import logging
import warnings


def _quiet_libraries() -> None:
    """Keep header values out of logs: pydicom and deid quote values in their warnings."""
    import pydicom.config
    from deid.logger import bot

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    warnings.filterwarnings("ignore", module=r"deid(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    bot.level = -10  # deid's own logger: nothing, not even errors (they quote values)


_quiet_libraries()

from .tasks import (  # noqa: E402
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
