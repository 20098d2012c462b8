"""A task whose library error quotes a patient's value, to follow a failure to luigid, its state file and mail."""

from __future__ import annotations

import luigi

from sendit_luigi.tasks import Reported

PLANTED = "PHIFAILDOE^JANE"


class LeakyFailure(Reported, luigi.Task):
    """Fails the way pydicom does: its message quotes an element's raw bytes."""

    def complete(self) -> bool:
        return False

    def run(self) -> None:
        raise ValueError(f"Expected total bytes to be an even multiple. Instead received b'{PLANTED}' with length 15")
