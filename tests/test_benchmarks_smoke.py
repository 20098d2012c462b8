"""The benchmarks still run (on tiny data; the numbers of a smoke run mean nothing), one test each."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

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


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_benchmark_runs_and_writes_its_table(tmp_path, name):
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", name, "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "Smoke run on tiny data" in text
    assert SECTIONS[name] in text
    assert [h for h in SECTIONS.values() if h in text and h != SECTIONS[name]] == [], "only the section asked for"
    assert text.count("| ") > 4
