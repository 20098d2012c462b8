"""The benchmarks still run (on tiny data; the numbers of a smoke run mean nothing), one test each.

Each runs ``benchmarks.run`` in this process, and every ``luigi`` or ``sendit_luigi`` command a
benchmark starts is forked from the warm fork server (``SENDIT_TEST_SPAWN=1``: a new interpreter).
"""

from __future__ import annotations

from pathlib import Path

import forkserver
import pytest
from conftest import SPAWN, forked_argv

from benchmarks import harness, run

# benchmarks.run --only NAME -> the heading of the section it writes
SECTIONS = {
    "deid": "De-identification throughput",
    "e2e": "End-to-end ProcessAll",
    "scale": "Cost per batch as the archive grows",
    "memory": "Memory",
    "upload": "Upload to the emulators",
    "rows": "Metadata rows to BigQuery",
    "dasher": "DASHER",
    "latency": "Uploads to a distant bucket",
    "small": "A small job, start-up included",
    "two": "Two processes against one luigid",
}


def forked(argv: list[str], cwd: Path, env: dict, log: Path, peak_file: Path | None = None) -> harness.Started:
    """``harness.launch`` through the fork server (no peak RSS: a smoke run's numbers mean nothing)."""
    return forkserver.server().spawn(forked_argv(argv), env, cwd, log, None)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_benchmark_runs_and_writes_its_table(tmp_path, monkeypatch, name):
    if not SPAWN:
        monkeypatch.setattr(harness, "launch", forked)
    out = tmp_path / "BENCHMARKS.md"
    assert run.main(["--smoke", "--only", name, "--output", str(out)]) == 0
    text = out.read_text()
    assert "Smoke run on tiny data" in text
    assert SECTIONS[name] in text
    assert [h for h in SECTIONS.values() if h in text and h != SECTIONS[name]] == [], "only the section asked for"
    assert text.count("| ") > 4
