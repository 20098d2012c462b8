"""Benchmarks 2-5 and the DASHER grouping measurement, each with its baseline in the same run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import harness
from .dataset import make_batches, make_multiframe_batch

sys.path.insert(0, str(harness.REPO / "tests"))  # the loopback emulators and DASHER server


def end_to_end(root: Path, batches: int, files: int, repeats: int = 3) -> dict:
    """Benchmark 2: ProcessAll on ``batches`` batches with --workers 1 and --workers 2.

    The two are run in turn, ``repeats`` times each, from scratch each time; each
    figure is the run with the median wall time, so one slow moment of the machine
    does not decide the ratio.
    """
    source = root / "input"
    make_batches(source, batches, files, "small")
    out = {"batches": batches, "files": batches * files, "repeats": repeats}
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for attempt in range(repeats):
        for workers in (1, 2):
            run_root = root / f"w{workers}-{attempt}"
            run_root.mkdir()
            (run_root / "input").symlink_to(source)
            result = harness.luigi(run_root, workers=workers)
            runs[workers].append((result["wall"], harness.stage_seconds(run_root)))
            shutil.rmtree(run_root)
    for workers, measured in runs.items():
        wall, work = sorted(measured)[len(measured) // 2]
        out[f"walls_{workers}"] = [m[0] for m in measured]
        out[f"wall_{workers}"] = wall
        out[f"batches_s_{workers}"] = batches / wall
        out[f"task_seconds_{workers}"] = work
        out[f"overhead_{workers}"] = max(0.0, wall - work / workers) / wall
    out["scaling"] = out["batches_s_2"] / out["batches_s_1"]
    return out


def memory(root: Path, sizes_mb: tuple[int, ...] = (256, 2048), frames_per_file: int = 200) -> dict:
    """Benchmark 4: peak RSS for batches of multi-frame files of growing total size."""
    out = {}
    for size in sizes_mb:
        run_root = root / f"m{size}"
        paths = make_multiframe_batch(run_root / "input" / "BIGSTUDY", size * 1024 * 1024, frames_per_file)
        result = harness.luigi(run_root, workers=1)
        out[size] = {
            "files": len(paths),
            "largest_mb": max(p.stat().st_size for p in paths) / 1e6,
            "total_mb": sum(p.stat().st_size for p in paths) / 1e6,
            "peak_rss_mb": result["peak_rss_mb"],
            "wall": result["wall"],
        }
        shutil.rmtree(run_root)
    return out


@contextlib.contextmanager
def cloud(root: Path):
    """The GCS and BigQuery emulators on 127.0.0.1, and a function giving the settings for a new bucket."""
    from emulators import BigQueryEmulator, GcsEmulator
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = GcsEmulator(root / "gcs").start()
    bq = BigQueryEmulator(root / "bq").start()
    client = storage.Client(
        project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs.endpoint}
    )

    def settings(name: str) -> dict:
        client.create_bucket(name)
        return {
            "storage.backend": "gcs",
            "storage.bucket": name,
            "storage.project": "test-project",
            "storage.collection": name.upper().replace("-", "_"),
            "storage.gcs_endpoint": gcs.endpoint,
            "storage.bigquery_endpoint": bq.endpoint,
            "storage.credentials": "anonymous",
        }

    try:
        yield settings
    finally:
        gcs.stop()
        bq.stop()


def upload_phase(root: Path, workers: int, settings: dict) -> tuple[float, int]:
    """Run UploadAll on the processed batches under ``root``; seconds of the upload phase and batches sent."""
    for marker in (root / "work" / "batches").rglob("uploaded.json"):
        marker.unlink()
    harness.luigi(root, task="UploadAll", workers=workers, extra=settings)
    # The upload phase itself, from the markers' own times (not Python's and Luigi's start-up).
    stages = [json.loads(p.read_text())["stage"] for p in (root / "work" / "batches").rglob("uploaded.json")]
    return max(s["end"] for s in stages) - min(s["start"] for s in stages), len(stages)


def upload(root: Path, batches: int, files: int) -> dict:
    """Benchmark 5: UploadAll to the GCS and BigQuery emulators with 1 and 10 parallel upload workers."""
    make_batches(root / "input", batches, files, "mixed")
    harness.luigi(root, task="ProcessBatches", workers=2)
    tarballs = list((root / "work" / "batches").rglob("study.tar.gz"))
    megabytes = sum(p.stat().st_size for p in tarballs) / 1e6
    out = {"batches": len(tarballs), "megabytes": megabytes}
    with cloud(root) as settings:
        for workers in (1, 10):
            span, sent = upload_phase(root, workers, {**settings(f"bench-{workers}"), "upload.workers": str(workers)})
            out[f"wall_{workers}"] = span
            out[f"mb_s_{workers}"] = megabytes / span
            out[f"rows_s_{workers}"] = sent / span
    out["speedup"] = out["mb_s_10"] / out["mb_s_1"]
    return out


def metadata_rows(root: Path, batches: int) -> dict:
    """Benchmark 6: many small studies to BigQuery, one row per request (the baseline) or 100 per request."""
    make_batches(root / "input", batches, 1, "small")
    harness.luigi(root, task="ProcessBatches", workers=2)
    out = {"batches": batches}
    with cloud(root) as settings:
        for per_request in (1, 100):
            span, sent = upload_phase(
                root,
                1,
                {**settings(f"rows-{per_request}"), "upload.workers": "1", "upload.rows_per_request": str(per_request)},
            )
            out[f"wall_{per_request}"] = span
            out[f"rows_s_{per_request}"] = sent / span
    out["speedup"] = out["rows_s_100"] / out["rows_s_1"]
    return out


BARE_LOOP = """
import sys, pathlib, pydicom
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for folder in sorted(src.iterdir()):
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds.remove_private_tags()
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate", "OtherPatientIDs"):
            if keyword in ds:
                setattr(ds, keyword, "ANON")
        for keyword in ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate"):
            if keyword in ds:
                setattr(ds, keyword, "20000101")
        ds.save_as(out / f"{folder.name}-{path.name}", enforce_file_format=True)
"""


def small_job(root: Path, batches: int, files: int) -> dict:
    """Benchmark 8: ``ProcessAll`` on a small job, start-up included, against a bare pydicom loop.

    The loop (a new Python process) reads each file, removes private tags, overwrites the
    names, ids and dates, and writes it: the least a de-identification can do. ``ProcessAll``
    runs with the shipped settings and ``--workers 2``; the loop on one core, as one would write it.
    """
    make_batches(root / "input", batches, files, "small")
    (root / "bare").mkdir()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE_LOOP, str(root / "input"), str(root / "bare")], check=True)
    bare = time.perf_counter() - start
    ours = harness.luigi(root, workers=2)["wall"]
    return {"batches": batches, "files": batches * files, "bare": bare, "ours": ours, "ratio": ours / bare}


CPU_LOOP = "s = 0\nfor i in range({n}):\n    s += i * i\n"


def core_scaling(loop: int) -> float:
    """This machine's own ceiling for benchmark 9: how much faster two busy Python processes do
    twice the work of one (2.0 when both cores are really free; less when the host takes its share)."""
    command = [sys.executable, "-c", CPU_LOOP.format(n=loop)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    one = time.perf_counter() - start
    start = time.perf_counter()
    procs = [subprocess.Popen(command) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    return 2 * one / (time.perf_counter() - start)


def two_processes(root: Path, batches: int, files: int, repeats: int = 3, loop: int = 15_000_000) -> dict:
    """Benchmark 9: one ``luigi`` process against luigid, then two at once, each with ``--workers 1``.

    Work-bound batches (``files`` each). A process takes work a chunk at a time, so the chunks are
    two batches here (``[sendit] chunk_size = 2``), as they are 500 of a 100,000-batch archive.
    Every run reads the same input (the pipeline only reads it), keeps its folders until the end
    (deleting them slows this machine's disk for the next run) and starts after the last one's
    writes are on disk. One process and two run in turn, ``repeats`` times, each pair after
    timing the two cores themselves (``core_scaling``). This machine's speed drifts by a fifth over
    minutes, so the ratio is the median of the pairs' ratios, each measured within a minute.
    """
    from conftest import Luigid

    source = root / "input"
    make_batches(source, batches, files, "small")
    out: dict = {"batches": batches, "files": batches * files, "repeats": repeats}
    walls: dict[int, list[float]] = {1: [], 2: []}
    cores: list[float] = []
    for attempt in range(repeats):
        cores.append(core_scaling(loop))
        for processes in (1, 2):
            run_root = root / f"p{processes}-{attempt}"
            run_root.mkdir()
            (run_root / "input").symlink_to(source)
            (run_root / "luigid").mkdir()
            server = Luigid(run_root / "luigid")
            try:
                extra = {"sendit.chunk_size": 2, "retcode.already_running": 0, "retcode.missing_data": 0}
                cfg = harness.write_cfg(run_root, extra)
                env = harness.run_env(cfg)
                command = harness.luigi_command(
                    "ProcessAll",
                    "--scheduler-host",
                    "127.0.0.1",
                    "--scheduler-port",
                    str(server.port),
                    "--workers",
                    "1",
                    "--no-lock",
                    "--log-level",
                    "INFO",
                )
                paths = [run_root / f"process-{i}.log" for i in range(processes)]
                os.sync()  # the last run's writes go to disk now, not during this one
                start = time.perf_counter()
                procs = [harness.launch(command, run_root, env, path) for path in paths]
                codes = [p.wait() for p in procs]
                walls[processes].append(time.perf_counter() - start)
            finally:
                server.stop()
            logs = [path.read_text(errors="replace") for path in paths]
            assert codes == [0] * processes, logs
            ran = [re.findall(r"batch ([0-9a-f]{16}): done, ", log) for log in logs]
            assert sum(len(r) for r in ran) == batches and len(set().union(*map(set, ran))) == batches, "ran twice"
            out[f"share_{processes}"] = [len(r) for r in ran]
    out["walls_1"], out["walls_2"], out["cores"] = walls[1], walls[2], cores
    out["speedups"] = [one / two for one, two in zip(walls[1], walls[2], strict=True)]
    out["wall_1"], out["wall_2"], out["core_scaling"], out["speedup"] = (
        sorted(out[k])[repeats // 2] for k in ("walls_1", "walls_2", "cores", "speedups")
    )
    return out


def upload_latency(root: Path, batches: int, latency: float = 0.05) -> dict:
    """Benchmark 7: uploads to a distant bucket (``latency`` s added to every GCS request by a proxy).

    One upload at a time (one shard, one thread, one Luigi worker) against the shipped settings
    (``[upload] workers = 10`` shards of ``threads = 8``) with ``--workers 2``.
    """
    from emulators import FaultyProxy

    make_batches(root / "input", batches, 1, "small")
    harness.luigi(root, task="ProcessBatches", workers=2)
    out: dict = {"batches": batches, "latency_ms": latency * 1000}
    with cloud(root) as settings:
        for name, workers, shards, threads in (("serial", 1, 1, 1), ("shipped", 2, 10, 8)):
            cfg = settings(f"latency-{name}")
            proxy = FaultyProxy(cfg["storage.gcs_endpoint"], latency=latency)
            try:
                cfg.update({"storage.gcs_endpoint": proxy.endpoint, "upload.workers": shards})
                cfg["upload.threads"] = threads
                span, sent = upload_phase(root, workers, cfg)
            finally:
                proxy.close()
            assert sent == batches, f"{sent} of {batches} uploaded"
            out[f"wall_{name}"] = span
            out[f"requests_{name}"] = proxy.seen
    out["speedup"] = out["wall_serial"] / out["wall_shipped"]
    return out


def dasher_grouping(root: Path, batches: int, latency: float = 0.05) -> dict:
    """How long stage 2 takes with one DASHER request per batch versus one per group of 20."""
    from dasher_server import DasherServer

    make_batches(root / "input", batches, 1, "small")
    out = {"batches": batches, "latency_ms": latency * 1000}
    with DasherServer(latency=latency) as server:
        secrets = server.write_secrets(root / "secrets.json")
        for group in (1, 20):
            run_root = root / f"g{group}"
            run_root.mkdir()
            (run_root / "input").symlink_to(root / "input")
            settings = {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.secrets_file": str(secrets),
                "sendit.group_size": str(group),
            }
            harness.luigi(run_root, task="ProcessBatches", workers=1, extra=settings)
            sent = len(server.paths)
            # a grouped call's timing is recorded on each batch of the group: count each call once
            calls = {
                tuple(sorted(json.loads(p.read_text())["stage"].items()))
                for p in (run_root / "work" / "batches").rglob("identifiers.json")
            }
            out[f"requests_{group}"] = sent - sum(v for k, v in out.items() if k.startswith("requests_"))
            out[f"stage2_seconds_{group}"] = sum(dict(c)["seconds"] for c in calls)
    out["speedup"] = out["stage2_seconds_1"] / out["stage2_seconds_20"]
    return out
