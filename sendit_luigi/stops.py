"""Named points where a kill test stops the pipeline, so that its SIGKILL lands exactly there.

With ``SENDIT_STOP_AT=<point>`` in the environment, the first process to reach
``<point>`` creates the file named by ``SENDIT_STOP_FILE`` and waits there until it is
killed (``tests/test_resume_after_kill.py``), or until the test creates the same name
with ``.released`` appended: then it goes on, and the point stops nothing any more
(``tests/test_operations.py`` looks at luigid while the run stands still). Unset, as in
every real run, ``reach`` is one dictionary look-up: it changes nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = (
    "headers written",  # stage 1 wrote a batch's headers.json; later batches not read yet
    "tarball half written",  # stage 3 put a file into a study's temporary tarball, not all of them
    "objects placed",  # the upload placed its group's tarballs; their rows are not inserted
    "upload marked",  # the upload wrote one batch's uploaded.json, not the others'
)


def reach(point: str) -> None:
    """Stop here when a test asks for ``point``: until killed, or until the test releases the run."""
    if os.environ.get("SENDIT_STOP_AT") != point:
        return
    stop = Path(os.environ["SENDIT_STOP_FILE"])
    released = stop.with_name(stop.name + ".released")
    if released.exists():
        return
    stop.touch()
    while not released.exists():
        time.sleep(0.05)
