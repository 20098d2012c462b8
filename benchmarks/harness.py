"""Running the real `luigi` command on benchmark data, with a config written for the run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

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


def run_env(cfg: Path) -> dict:
    """The environment a command of this project runs in: this checkout's package, the run's ``luigi.cfg``."""
    return dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), PYTHONPATH=str(REPO))


class Started(Protocol):
    """A started command, as ``subprocess.Popen`` is one."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def spawn(argv: list[str], cwd: Path, env: dict, log: Path, peak_file: Path | None = None) -> Started:
    """Start ``argv`` (this Python's ``-m luigi`` or ``-m sendit_luigi``) with both its streams in ``log``.

    With ``peak_file``, a small wrapper process runs it and writes its peak RSS there (KB: the
    largest of the command and the task processes it forks).
    """
    if peak_file is not None:
        argv = [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), *argv]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


# How every benchmark starts a ``luigi`` or ``sendit_luigi`` command. The smoke tests replace it
# with one that forks the command from a warm Python (tests/forkserver.py): same command, less start-up.
launch = spawn


def run_command(argv: list[str], cwd: Path, env: dict, log: Path, peak_file: Path | None = None) -> int:
    """Run ``argv`` to its end through ``launch``; its exit status."""
    return launch(argv, cwd, env, log, peak_file).wait()


def luigi(root: Path, task: str = "ProcessAll", workers: int = 1, extra: dict | None = None) -> dict:
    """Run the luigi command; return wall seconds, exit code, and the run's peak RSS (MB; 0 when not measured)."""
    cfg = write_cfg(root, extra)
    env = run_env(cfg)
    command = luigi_command(task, "--local-scheduler", "--workers", str(workers), "--log-level", "WARNING")
    log, peak = root / f"luigi-{time.monotonic_ns()}.log", root / "peak-rss-kb"
    peak.unlink(missing_ok=True)
    start = time.perf_counter()
    code = run_command(command, root, env, log, peak)
    wall = time.perf_counter() - start
    output = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"luigi failed ({code}):\n{output[-3000:]}")
    peak_kb = int(peak.read_text()) if peak.exists() else 0
    return {"wall": wall, "code": code, "peak_rss_mb": peak_kb / 1024, "output": output}


PEAK_WRAPPER = (
    "import pathlib, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "pathlib.Path(sys.argv[1]).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def follow(log: Path, proc: Started) -> Iterator[str]:
    """The lines of ``log`` as ``proc`` writes them, to its end."""
    log.touch()  # a launcher may open it only once the process runs
    with open(log, errors="replace") as fh:
        partial = ""
        while True:
            chunk = fh.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    yield partial
                    partial = ""
            elif proc.poll() is not None:
                rest = partial + fh.read()
                yield from rest.splitlines(keepends=True)
                return
            else:
                time.sleep(0.01)


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
