"""What the console shows: Luigi's run log and this package's, at INFO unless asked otherwise.

``luigi`` logs at ``[core] log_level`` (luigi.cfg sets INFO; ``--log-level DEBUG``
asks for more). At INFO it still writes three lines a task about telling the
scheduler a status ("Informed scheduler that task ... has status PENDING"):
30,000 lines at 10,000 batches. Those are dropped unless the level is DEBUG. The
package's own lines (one per batch and stage) go to the same console.
"""

from __future__ import annotations

import logging

LUIGI = logging.getLogger("luigi-interface")
OWN = logging.getLogger("sendit_luigi")
CHATTER = ("Informed scheduler that task", "Checking if ", "logging already configured")


class _QuietScheduling(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith(CHATTER))


def setup() -> None:
    """Share Luigi's console handlers with this package's logger, at Luigi's level (idempotent)."""
    level = LUIGI.getEffectiveLevel()
    OWN.setLevel(level)
    for handler in LUIGI.handlers:
        if level > logging.DEBUG and not any(isinstance(f, _QuietScheduling) for f in handler.filters):
            handler.addFilter(_QuietScheduling())
        if handler not in OWN.handlers:
            OWN.addHandler(handler)
    OWN.propagate = not OWN.handlers
