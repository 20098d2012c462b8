"""Benchmark 3: cost per batch as the archive grows, with the local scheduler and with luigid.

One-file batches (small mix), the shipped settings (``group_size = 20``,
``chunk_size = 500``) and ``--workers 2``, as an operator would run them. For each
size: the wall time and its cost per batch, the seconds before the first task
started, a no-op rerun, and ``status --summary``; against luigid also its peak
memory and the slowest load of its task list page seen during the run.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from . import harness
from .dataset import make_batches

sys.path.insert(0, str(harness.REPO / "tests"))  # the real luigid helper the tests use


def run(root: Path, sizes: tuple[int, ...], schedulers: tuple[str, ...] = ("local", "luigid")) -> list[dict]:
    """One row per scheduler and size, printed as soon as it is measured (a 100,000-batch run takes an hour).

    Each size's input is written once and read by every scheduler (the pipeline only reads its
    inputs), and every run keeps its work folder until the end: copying or deleting a hundred
    thousand folders between two runs would slow this machine's disk for the next one.
    """
    inputs = {}
    for n in sizes:
        inputs[n] = root / f"input-{n}"
        make_batches(inputs[n], n, 1, "small")
    out = []
    for scheduler in schedulers:
        for n in sizes:
            run_root = root / f"{scheduler}-{n}"
            run_root.mkdir(parents=True)
            out.append({"batches": n, "scheduler": scheduler, **measure(run_root, inputs[n], scheduler)})
            print(f"scale row: {out[-1]}", flush=True)
    return out


def measure(root: Path, inputs: Path, scheduler: str) -> dict:
    server = None
    if scheduler == "luigid":
        from conftest import Luigid

        (root / "luigid").mkdir()
        server = Luigid(root / "luigid")
    try:
        first = timed_run(root, inputs, server)
        noop = timed_run(root, inputs, server)
        first_summary_s, summary_s = status_summary(root), status_summary(root)  # the second from the cache
    finally:
        if server is not None:
            server.stop()
    return {
        "wall": first["wall"],
        "first_task_s": first["first_task_s"],
        "noop_wall": noop["wall"],
        "first_summary_s": first_summary_s,
        "summary_s": summary_s,
        "luigid_peak_mb": first.get("luigid_peak_mb"),
        "task_list_max_s": first.get("task_list_max_s"),
    }


def status_summary(root: Path) -> float:
    """Seconds ``python -m sendit_luigi status --summary`` takes, start-up included."""
    env = harness.run_env(root / "luigi.cfg")
    log = root / f"status-{time.monotonic_ns()}.log"
    start = time.perf_counter()
    code = harness.run_command([sys.executable, "-m", "sendit_luigi", "status", "--summary"], root, env, log)
    seconds = time.perf_counter() - start
    assert code == 0 and log.read_text(), log.read_text()
    return seconds


def timed_run(root: Path, inputs: Path, server) -> dict:
    """Run ProcessAll; note when the first per-batch task started, and sample luigid while it runs."""
    cfg = harness.write_cfg(root, {"sendit.input_folders": inputs})
    env = harness.run_env(cfg)
    where = (
        ["--local-scheduler"]
        if server is None
        else ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(server.port)]
    )
    command = harness.luigi_command("ProcessAll", *where, "--workers", "2", "--log-level", "INFO")
    log = root / f"run-{time.monotonic_ns()}.log"
    start = time.perf_counter()
    proc = harness.launch(command, root, env, log)
    samples = {"peak_kb": 0, "task_list_max_s": 0.0}
    stop = threading.Event()
    if server is not None:
        threading.Thread(target=sample_luigid, args=(server, samples, stop), daemon=True).start()
    first_task = None
    tail: list[str] = []
    for line in harness.follow(log, proc):
        if first_task is None and " running " in line and "(key=" in line:
            first_task = time.perf_counter() - start
        tail = (tail + [line])[-40:]
    code = proc.wait()
    wall = time.perf_counter() - start
    stop.set()
    if code != 0:
        raise RuntimeError(f"ProcessAll exited {code}:\n{''.join(tail)}")
    out = {"wall": wall, "first_task_s": first_task}
    if server is not None:
        out.update(luigid_peak_mb=samples["peak_kb"] / 1024, task_list_max_s=samples["task_list_max_s"])
    return out


SAMPLE_EVERY = 10.0  # seconds between two looks at luigid

# What luigid's page asks for when it is opened or refreshed (luigi/static/visualiser/js/luigi.js):
# one task list per status, the finished tasks' last.
PAGE = (
    ("RUNNING", ""),
    ("BATCH_RUNNING", ""),
    ("FAILED", ""),
    ("PENDING", "UPSTREAM_FAILED"),
    ("DISABLED", ""),
    ("PENDING", "UPSTREAM_DISABLED"),
    ("PENDING", ""),
    ("DONE", ""),
)


def sample_luigid(server, samples: dict, stop: threading.Event) -> None:
    """Every ``SAMPLE_EVERY`` s: luigid's memory, and how long its task list page takes to load."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.is_set():
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                samples["peak_kb"] = max(samples["peak_kb"], int(line.split()[1]))
        start = time.perf_counter()
        for status, upstream in PAGE:
            query = urllib.parse.urlencode(
                {"data": json.dumps({"status": status, "upstream_status": upstream, "search": ""})}
            )
            with opener.open(f"{server.url}/api/task_list?{query}", timeout=60) as reply:
                reply.read()
        samples["task_list_max_s"] = max(samples["task_list_max_s"], time.perf_counter() - start)
        stop.wait(SAMPLE_EVERY)
