"""The benchmarks still run (on tiny data; the numbers of a smoke run mean nothing)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_every_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "Smoke run on tiny data" in text
    for heading in (
        "De-identification throughput",
        "End-to-end ProcessAll",
        "Cost per batch as the archive grows",
        "Memory",
        "Upload to the emulators",
        "Metadata rows to BigQuery",
        "DASHER",
        "Uploads to a distant bucket",
        "A small job, start-up included",
        "Two processes against one luigid",
    ):
        assert f"{heading}" in text
    assert text.count("| ") > 20
