"""Scenario: the local bucket holds de-identified studies and their metadata; who may read them is the
operator's decision ([storage] local_mode), and by default only the owner can."""

from __future__ import annotations

import stat

import pytest
from conftest import make_study


def modes(root):
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
        if not p.name.startswith("metadata.sqlite-")  # SQLite's own -wal/-shm files live inside the 0700 folder
    }


@pytest.mark.parametrize("setting, folders, files", [(None, 0o700, 0o600), ("755", 0o755, 0o644)])
def test_the_local_bucket_is_private_unless_the_operator_says_otherwise(pipe, setting, folders, files):
    pipe.add(make_study(1), files=1)
    if setting:
        pipe.settings["storage.local_mode"] = setting
    assert pipe.run().code == 0
    found = modes(pipe.bucket)
    assert any(name.endswith(".tar.gz") for name in found) and "metadata.sqlite" in found
    for name, mode in found.items():
        is_folder = (pipe.bucket / name).is_dir()
        assert mode == (folders if is_folder else files), (name, oct(mode))


def test_a_local_mode_that_locks_the_owner_out_is_refused(pipe):
    pipe.add(make_study(1), files=1)
    pipe.settings["storage.local_mode"] = "070"
    run = pipe.run()
    assert run.code != 0 and "local_mode must leave the owner all rights" in run.output
