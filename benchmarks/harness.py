"""Running the real `luigi` command on benchmark data, with a config written for the run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sendit_luigi import config
from sendit_luigi.tasks import luigi_command

REPO = Path(__file__).resolve().parent.parent

BASE = {
    "sendit": {"group_size": "20"},
    "identifiers": {"backend": "local"},
    "storage": {"backend": "local", "collection": "BENCH"},
    "upload": {"workers": "10"},
}


def write_cfg(root: Path, extra: dict | None = None) -> Path:
    sections = {k: dict(v) for k, v in BASE.items()}
    sections["sendit"].update(input_folders=str(root / "input"), work_dir=str(root / "work"))
    sections["storage"].update(local_root=str(root / "bucket"))
    # Luigi's one-run-per-host lock is keyed by the command line, which every run here shares: each run its own
    # lock folder, so that benchmarks (and the smoke tests, side by side) never refuse each other.
    sections.setdefault("core", {})["lock_pid_dir"] = str(root / "locks")
    for key, value in (extra or {}).items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = str(value)
    text = config.render_cfg(sections)
    path = root / "luigi.cfg"
    path.write_text(text)
    return path


def luigi(root: Path, task: str = "ProcessAll", workers: int = 1, extra: dict | None = None) -> dict:
    """Run the luigi command; return wall seconds, exit code, and the child's peak RSS (MB)."""
    cfg = write_cfg(root, extra)
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), PYTHONPATH=str(REPO))
    command = luigi_command(task, "--local-scheduler", "--workers", str(workers), "--log-level", "WARNING")
    start = time.perf_counter()
    # A wrapper process, so that its RUSAGE_CHILDREN is this one run's peak RSS alone.
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *command], cwd=root, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"luigi failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stdout.strip().splitlines()[-1])
    return {"wall": wall, "code": proc.returncode, "peak_rss_mb": peak_kb / 1024, "output": proc.stderr}


PEAK_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def stage_seconds(root: Path) -> float:
    """Seconds of work recorded in the checkpoints: every stage of every batch.

    Stage 2 runs once per group of batches and records that call on each batch
    of the group, so each distinct call is counted once.
    """
    import json

    total = 0.0
    calls = set()
    for folder in (root / "work" / "batches").iterdir():
        for name in ("headers.json", "result.json", "uploaded.json", "identifiers.json"):
            path = folder / name
            if not path.exists():
                continue
            record = json.loads(path.read_text())
            if name == "identifiers.json":
                calls.add((record["stage"]["start"], record["stage"]["end"], record["stage"]["seconds"]))
            elif name == "result.json":
                total += record["stages"]["anonymize"]["seconds"]
            else:
                total += record["stage"]["seconds"]
    return total + sum(c[2] for c in calls)
