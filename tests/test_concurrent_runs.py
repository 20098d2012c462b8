"""Scenarios: two runs at once on one work folder, and the files a killed run left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO, make_study
from dasher_server import DasherServer

from sendit_luigi.workdir import atomic_writer, sweep_temporaries


def test_a_second_local_scheduler_run_on_the_same_work_dir_refuses(pipe, tmp_path):
    for n in (1, 2):
        pipe.add(make_study(n), files=1, nested=False)
    with DasherServer() as server:
        pipe.settings.update(
            {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.secrets_file": str(server.write_secrets(tmp_path / "secrets.json")),
            }
        )
        server.hold()  # the first run stays inside stage 2 until released
        first = pipe.start("--no-lock", workers=1)
        assert server.arrived.wait(120)
        second = pipe.run("--no-lock", workers=1)
        server.release()
        assert first.wait(300) == 0
    assert second.code != 0
    assert "another run" in second.output and "luigid" in second.output, second.output
    assert len(pipe.tarballs()) == 2 and len(pipe.rows()) == 2  # the first run did all of it, once
    assert pipe.run().code == 0  # the lock went with the first run


def test_the_sweep_removes_a_dead_writers_temporary_file_and_leaves_a_live_one(tmp_path):
    target = tmp_path / "headers.json"
    # a writer that was killed mid-write: its temporary file is left, and nobody holds it
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from sendit_luigi.workdir import atomic_writer\n"
        "with atomic_writer(Path(sys.argv[1])) as fh:\n"
        "    fh.write(b'half'); fh.flush(); os._exit(9)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert subprocess.run([sys.executable, "-c", code, str(target)], env=env).returncode == 9
    assert len(list(tmp_path.glob("headers.json-luigi-tmp-*"))) == 1
    with atomic_writer(tmp_path / "result.json") as live:
        live.write(b"{}")
        assert sweep_temporaries(tmp_path) == 1  # the dead writer's
        assert not list(tmp_path.glob("headers.json-luigi-tmp-*"))
        assert len(list(tmp_path.glob("result.json-luigi-tmp-*"))) == 1  # still being written
    assert (tmp_path / "result.json").read_bytes() == b"{}"


def test_a_small_run_gives_each_of_two_workers_a_chunk_of_its_own(pipe):
    """Seen: 20 batches made one chunk and one group of [sendit] group_size = 20: one worker did all of it."""
    for n in range(1, 7):
        pipe.add(make_study(n), files=1, nested=False)
    pipe.settings["sendit.group_size"] = "20"
    run = pipe.run(workers=2)
    assert run.code == 0, run.output
    for stage in ("ExtractHeaders", "Anonymize"):  # two chunks of three, one a worker: a group each
        assert len(re.findall(rf"running +{stage}\(key=@\w+, label=\w+\+2\)", run.output)) == 2, stage
    assert len(pipe.tarballs()) == 6
