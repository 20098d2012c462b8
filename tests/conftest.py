"""Fixtures: sample batch trees, a per-test config, and running the real ``luigi`` command.

Pipeline tests run ``python -m luigi --module sendit_luigi ProcessAll`` in a
process of its own with ``LUIGI_CONFIG_PATH`` pointing at a config written for the
test, exactly as a user would, so Luigi's config, registry and scheduler state never
leak between tests. The process is forked from a warm interpreter (``forkserver.py``),
or with ``SENDIT_TEST_SPAWN=1`` started anew.
"""

from __future__ import annotations

import email
import gzip
import hashlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import forkserver
import hypothesis
import pydicom
import pytest
from forkserver import Forked

from sendit_luigi import config
from sendit_luigi.deidentify import Profile, Recipe
from sendit_luigi.sample_data import Study, write_study
from sendit_luigi.tasks import luigi_command

REPO = Path(__file__).resolve().parent.parent

# Hypothesis: `make test` (CI's command) runs a fixed set of examples (derandomized, so a red run can
# be repeated); a bare pytest, or HYPOTHESIS_PROFILE=dev, draws new ones, more of them.
hypothesis.settings.register_profile("ci", derandomize=True, max_examples=40)
hypothesis.settings.register_profile("dev", max_examples=150)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
RECIPE = REPO / "sendit_luigi" / "recipes" / "sendit.dicom"


def default_profile(options: str = config.PROFILE_OPTIONS) -> Profile:
    """The profile with the shipped table, the default options and descriptor list."""
    return Profile(config.DEFAULT_TABLE, frozenset(config.split(options)), frozenset(config.split(config.DESCRIPTORS)))


def recipe_for(
    path: Path = RECIPE,
    keep_private: frozenset[str] = frozenset(),
    filters: tuple[str, ...] = (),
    options: str = config.PROFILE_OPTIONS,
) -> Recipe:
    """A recipe as the pipeline builds it, with the default profile."""
    return Recipe(path, default_profile(options), keep_private, filters)


def make_study(n: int, patient: int | None = None, **kw) -> Study:
    """Study number ``n`` with distinctive planted PHI; ``patient`` shares a patient."""
    p = n if patient is None else patient
    values = dict(
        folder=f"ACCN{41000 + n}",
        patient_id=f"PHIMRN{880000 + p}",
        patient_name=f"PHIFAMILY{p}^PHIGIVEN{p}",
        accession=f"ACCN{41000 + n}",
        # a year apart: more than two jitter ranges, so a shifted date never equals another planted one
        study_date=f"{2010 + n % 9}{(n % 9) + 1:02d}2{n % 9}",
        institution=f"PHI INSTITUTE {n}",
        physician=f"PHIDOCTOR{n}^REFERRER",
    )
    values.update(kw)
    return Study(**values)


# Commands run forked from a warm interpreter (tests/forkserver.py); SENDIT_TEST_SPAWN=1: a new one each time.
SPAWN = os.environ.get("SENDIT_TEST_SPAWN") == "1"


def forked_argv(command: list[str]) -> list[str]:
    """The fork server's name for ``command``: ``[python, -m, NAME, *args]`` -> ``[NAME, *args]``."""
    assert command[:2] == [sys.executable, "-m"] and command[2] in ("luigi", "sendit_luigi"), command
    return command[2:]


@dataclass
class Run:
    code: int
    output: str

    def ran(self, family: str) -> int:
        """How many tasks of ``family`` ran, from Luigi's execution summaries (each chunk's worker has one)."""
        count = 0
        for summary in self.output.split("===== Luigi Execution Summary =====")[1::2]:
            section = summary.split("ran successfully:")[1] if "ran successfully:" in summary else ""
            for line in section.split("\n* ")[0].splitlines():
                line = line.strip()
                if line.startswith("- ") and f" {family}(" in line:
                    count += int(line[2:].split()[0])
        return count


@dataclass
class Pipeline:
    """A project folder with input, work dir, bucket and a luigi.cfg."""

    root: Path
    settings: dict = field(default_factory=dict)

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def bucket(self) -> Path:
        return self.root / "bucket"

    @property
    def cfg(self) -> Path:
        return self.root / "luigi.cfg"

    def add(self, study: Study, files: int = 3, **kw) -> Path:
        return write_study(self.input, study, files, **kw)

    def write_cfg(self) -> None:
        sections = {
            "sendit": {"input_folders": str(self.input), "work_dir": str(self.work), "group_size": "3"},
            "identifiers": {"backend": "local"},
            "storage": {"backend": "local", "local_root": str(self.bucket), "collection": "TESTIRB"},
            "upload": {"workers": "10"},
            # Luigi's per-host lock is keyed by the command line, which every test shares: a lock of
            # the test's own (beside its folder), so that tests running side by side (pytest -n) do not
            # refuse each other.
            "core": {"lock_pid_dir": str(self.root.parent / f"{self.root.name}.luigi-lock")},
        }
        for key, value in self.settings.items():
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = str(value)
        text = config.render_cfg(sections)
        if not self.cfg.exists() or self.cfg.read_text() != text:
            self.cfg.write_text(text)

    def env(self) -> dict:
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(self.cfg), PYTHONPATH=str(REPO))
        return env

    def command(self, *extra: str, workers: int = 2, task: str = "ProcessAll", scheduler_port: int | None = None):
        self.write_cfg()
        self.input.mkdir(parents=True, exist_ok=True)
        where = (
            ["--local-scheduler"]
            if scheduler_port is None
            else ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(scheduler_port)]
        )
        return luigi_command(
            task,
            *where,
            "--workers",
            str(workers),
            *extra,
        )

    def run(
        self,
        *extra: str,
        workers: int = 2,
        task: str = "ProcessAll",
        timeout: int = 300,
        scheduler_port: int | None = None,
    ) -> Run:
        command = self.command(*extra, workers=workers, task=task, scheduler_port=scheduler_port)
        proc = self.execute(command, timeout)
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def start(self, *extra: str, workers: int = 1, scheduler_port: int | None = None) -> subprocess.Popen | Forked:
        """Start ProcessAll in the background (output to a log file in the project folder)."""
        command = self.command(*extra, workers=workers, scheduler_port=scheduler_port)
        return self.launch(command, self.env(), self.root / f"run-{len(list(self.root.glob('run-*.log')))}.log")

    def launch(self, command: list[str], env: dict, log: Path) -> subprocess.Popen | Forked:
        """Start ``command`` in the background, in a session of its own (``os.killpg`` reaches the task
        processes it forks), with its output in ``log``."""
        if not SPAWN:
            return forkserver.server().spawn(forked_argv(command), env, self.root, log, None)
        with open(log, "w") as out:
            return subprocess.Popen(
                command, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        self.write_cfg()
        return self.execute([sys.executable, "-m", "sendit_luigi", *args], 300)

    def execute(self, command: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run ``command`` (this Python's ``-m luigi`` or ``-m sendit_luigi``) in this project, as
        ``subprocess.run`` would with captured text output: forked from the fork server, or with
        ``SENDIT_TEST_SPAWN=1`` in a new interpreter."""
        if SPAWN:
            env = self.env()
            return subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            proc = forkserver.server().spawn(forked_argv(command), self.env(), self.root, out, err)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            return subprocess.CompletedProcess(command, proc.returncode, out.read_text(), err.read_text())

    # -- reading outputs ---------------------------------------------------

    def tarballs(self) -> list[Path]:
        return sorted(self.bucket.rglob("*.tar.gz"))

    def rows(self) -> list[dict]:
        from sendit_luigi.storage.local import rows

        return rows(self.bucket)

    def metrics(self):
        import pandas as pd

        return pd.read_csv(self.work / "metrics.csv", dtype={"error": str, "errors": str}).fillna(
            {"error": "", "errors": ""}
        )

    def batch_dirs(self) -> dict[str, Path]:
        """Input folder name -> its batch work folder."""
        import json

        out = {}
        for d in (self.work / "batches").iterdir():
            out[Path(json.loads((d / "source.json").read_text())["folder"]).name] = d
        return out


def file_label(folder: Path, name: str) -> str:
    """How errors name the file ``name`` of a batch folder: by its number in the batch, never its path."""
    from sendit_luigi.inputs import walk_files

    paths = [p.relative_to(folder).as_posix() for p in walk_files(folder)]
    return f"file {paths.index(name) + 1}"


def members(tarball: Path) -> dict[str, bytes]:
    """Tar member name -> bytes."""
    with tarfile.open(tarball, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def datasets(tarball: Path) -> dict[str, pydicom.Dataset]:
    return {name: pydicom.dcmread(io.BytesIO(data)) for name, data in members(tarball).items()}


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime_ns) for every file below ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def every_output_byte(pipe: Pipeline) -> list[tuple[str, bytes]]:
    """(name, bytes) of everything that leaves the private work dir, decompressed."""
    out: list[tuple[str, bytes]] = []
    for path in sorted(pipe.bucket.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(pipe.bucket))
        out.append(("object name " + rel, rel.encode()))
        if path.name.endswith(".tar.gz"):
            out.append((rel + " (gunzipped)", gzip.decompress(path.read_bytes())))
            for name, data in members(path).items():
                out.append((f"{rel}:{name} (member name)", name.encode()))
                out.append((f"{rel}:{name}", data))
        elif path.suffix == ".sqlite":
            db = sqlite3.connect(path)
            out.append((rel + " (dump)", "\n".join(db.iterdump()).encode()))
            db.close()
        else:
            out.append((rel, path.read_bytes()))
    metrics = pipe.work / "metrics.csv"
    if metrics.exists():
        out.append(("metrics.csv", metrics.read_bytes()))
    return out


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    p = Pipeline(tmp_path)
    p.input.mkdir()
    return p


@pytest.fixture
def configured(pipe: Pipeline, monkeypatch):
    """Make ``pipe``'s luigi.cfg the configuration of this test process (for calling stages directly)."""
    import luigi.configuration
    import luigi.task_register

    pipe.write_cfg()
    monkeypatch.setenv("LUIGI_CONFIG_PATH", str(pipe.cfg))
    monkeypatch.setattr(luigi.configuration.LuigiConfigParser, "_instance", None)
    monkeypatch.setattr(luigi.configuration.LuigiConfigParser, "_config_paths", [str(pipe.cfg)])
    luigi.task_register.Register.clear_instance_cache()
    import sendit_luigi.batches as batches
    import sendit_luigi.config as config
    import sendit_luigi.tasks as tasks

    config.reset()
    batches.secret_hash.cache_clear()
    tasks.stage_settings.cache_clear()
    yield pipe
    luigi.task_register.Register.clear_instance_cache()
    config.reset()
    batches.secret_hash.cache_clear()
    tasks.stage_settings.cache_clear()


def read_and_assign(b):
    """Stages 1 and 2 for batch ``b``, called as the tasks call them (with the ``configured`` settings).

    Returns the settings, for the test's own call of stage 3.
    """
    from sendit_luigi import stages, tasks
    from sendit_luigi.identifiers import get_backend

    settings = tasks.stage_settings()
    stages.extract(b, settings)
    stages.assign([b], get_backend(settings.hasher), settings)
    return settings


def shipped_scheduler_section(**overrides: object) -> str:
    """luigi.cfg's ``[scheduler]`` section, what luigid reads, as shipped (docker/luigi.cfg has the same)."""
    import configparser

    shipped = configparser.ConfigParser(interpolation=None)
    shipped.read(Path(__file__).resolve().parent.parent / "luigi.cfg")
    settings = {**shipped["scheduler"], **{k: str(v) for k, v in overrides.items()}}
    return "[scheduler]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


class Luigid:
    """A real luigid on 127.0.0.1 with a free port, state and logs in a temp folder."""

    def __init__(self, root: Path, **scheduler: object):
        """``scheduler``: settings of luigi.cfg's ``[scheduler]`` section to change for this luigid."""
        from emulators import free_port, wait_http

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = root / "luigid.cfg"
        cfg.write_text(shipped_scheduler_section(**scheduler))
        self.log = root / "luigid.out"
        self.server_log = root / "luigid-logs" / "luigi-server.log"  # with tornado's access log: one line a call
        (root / "luigid-logs").mkdir()  # luigid does not create its log folder
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "luigid"),
                    "--address",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--state-path",
                    str(root / "luigid.state"),
                    "--logdir",
                    str(root / "luigid-logs"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_http(f"{self.url}/api/task_list", self.proc, self.log)

    def calls(self) -> Counter[str]:
        """How many calls luigid has answered so far, by API method (``add_task``, ``get_work`` ...)."""
        return Counter(re.findall(r" /api/(\w+) ", self.server_log.read_text()))

    def api(self, method: str, **data) -> dict:
        import json

        return json.loads(self.raw(f"/api/{method}", **data))["response"]

    def raw(self, path: str, **data) -> str:
        """The text luigid answers at ``path`` (with ``data`` as its JSON query)."""
        import json
        import urllib.parse
        import urllib.request

        query = "?" + urllib.parse.urlencode({"data": json.dumps(data)}) if data else ""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.url}{path}{query}", timeout=10) as reply:
            return reply.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def luigid(tmp_path_factory):
    server = Luigid(tmp_path_factory.mktemp("luigid"))
    yield server
    server.stop()


@pytest.fixture
def smtp_sink():
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self):
            self.messages: list[str] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            message = email.message_from_bytes(envelope.content)
            parts = [message["Subject"] or ""]
            parts += [
                p.get_payload(decode=True).decode("utf-8", "replace")
                for p in message.walk()
                if not p.is_multipart() and p.get_content_maintype() == "text"
            ]
            self.messages.append("\n".join(parts))
            return "250 OK"

    from emulators import free_port

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


def mail_alerts_to(pipe: Pipeline, controller) -> None:
    """Send ``pipe``'s alerts through Luigi's SMTP settings to the ``smtp_sink`` at ``controller``."""
    pipe.settings.update(
        {
            "email.method": "smtp",
            "email.sender": "sendit@example.org",
            "email.force_send": "true",
            "smtp.host": "127.0.0.1",
            "smtp.port": str(controller.port),
            "alerts.receiver": "ops@example.org",
        }
    )
