"""Run the project's commands in processes forked from a warm interpreter.

A pipeline test runs the real command line (``luigi --module sendit_luigi ...`` or
``python -m sendit_luigi ...``) in a process of its own, as a user would. Starting
Python and importing Luigi, pydicom and the package takes about half a second, and a
test may run the pipeline several times. So each pytest process starts one *fork
server*: a Python that imports all of that once, reads no configuration, and forks a
new process per command. The forked process takes the test's environment, working
folder and arguments, starts a session of its own (``os.killpg`` reaches its task
processes), runs the command's own entry point (``luigi.cmdline.luigi_run`` or the
package's ``__main__``), and exits as Python would: non-daemon threads joined, exit
handlers run, the exit status of ``SystemExit``.

``SENDIT_TEST_SPAWN=1`` makes the tests start a new interpreter for every command
instead (``conftest.Pipeline``), to check that nothing depends on the fork.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# -- the server (runs in its own process) ----------------------------------------


def serve() -> None:
    """Import what the commands need, then fork one process per request read from stdin."""
    # The commands' imports, and what the package imports only when it needs it (a run needs all of it).
    import deid.dicom  # noqa: F401 - with matplotlib, about 0.5 s
    import deid.dicom.pixels.clean  # noqa: F401
    import google.auth.credentials  # noqa: F401
    import google.cloud.bigquery  # noqa: F401
    import google.cloud.storage  # noqa: F401
    import luigi.cmdline  # noqa: F401 - Luigi reads [core] at import: the command's own config is read anew
    import pandas  # noqa: F401
    import som.api.identifiers  # noqa: F401
    from luigi.configuration import LuigiConfigParser

    import sendit_luigi  # noqa: F401
    from sendit_luigi import ops, sample_data, watch  # noqa: F401 - what __main__ imports

    gc.freeze()  # what is imported now lives on: the commands' collections need not walk it
    # Each command reads its own configuration: Luigi's default places, then its LUIGI_CONFIG_PATH.
    defaults = [p for p in LuigiConfigParser._config_paths if p != os.environ.get("LUIGI_CONFIG_PATH")]
    requests, replies = os.dup(0), os.dup(1)  # the channel; the commands get their own 0, 1 and 2
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def reply(message: dict) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    pending = b""
    while True:
        ready, _, _ = select.select([requests, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        reap()
        if requests not in ready:
            continue
        data = os.read(requests, 65536)
        if not data:
            return  # the test process is gone
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                for fd in (requests, replies, wake_r, wake_w):
                    os.close(fd)
                _run_command(request, defaults)  # never returns
            reply({"pid": pid})


def _run_command(request: dict, config_paths: list[str]) -> None:
    """In the forked process: become the command ``request`` names, then exit with its status."""
    import atexit
    import logging
    import threading

    import luigi.configuration

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND) if request["stderr"] else out
    os.dup2(out, 1)
    os.dup2(err, 2)
    luigi.configuration.LuigiConfigParser._instance = None  # what the command's own import would read
    luigi.configuration.LuigiConfigParser._config_paths = list(config_paths)
    if "LUIGI_CONFIG_PATH" in os.environ:
        luigi.configuration.add_config_path(os.environ["LUIGI_CONFIG_PATH"])
    kind, *args = request["argv"]
    code: int = 0
    try:
        if kind == "luigi":
            sys.argv = ["luigi", *args]
            luigi.cmdline.luigi_run(args)
        else:
            import runpy

            sys.argv = ["sendit_luigi", *args]
            runpy.run_module("sendit_luigi", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported as Python reports it, exit status 1
        import traceback

        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined] - what interpreter exit does first
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


# -- the client (in the pytest process) ------------------------------------------


class ForkServer:
    """One fork server, started on first use."""

    def __init__(self) -> None:
        from sendit_luigi.config import render_cfg

        # A folder of its own, with the settings every project's configuration carries: Luigi
        # reads its configuration once at import (whether to load its range tasks).
        self.home = Path(tempfile.mkdtemp(prefix="forkserver-"))
        (self.home / "luigi.cfg").write_text(render_cfg({}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUIGI_")}
        env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), LUIGI_CONFIG_PATH=str(self.home / "luigi.cfg"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import forkserver; forkserver.serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self.home,
            env=env,
        )
        self.exits: dict[int, int] = {}
        self.pids: list[int] = []
        self.pending = b""
        atexit.register(self.close)

    def close(self) -> None:
        """End the server (its stdin closes) and remove its folder."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def spawn(self, argv: list[str], env: dict, cwd: Path, stdout: Path, stderr: Path | None) -> Forked:
        assert self.proc.stdin is not None
        request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(stdout), "stderr": stderr and str(stderr)}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        count = len(self.pids)
        while len(self.pids) == count:
            self._read(60)
        return Forked(self, self.pids[-1])

    def _read(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], max(timeout, 0))[0]:
            return
        data = os.read(fd, 65536)
        if not data:
            raise RuntimeError("the fork server ended")
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            message = json.loads(line)
            if "pid" in message:
                self.pids.append(message["pid"])
            else:
                self.exits[message["exited"]] = message["code"]

    def wait(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exits:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            self._read(max(left, 0))
            if pid not in self.exits and left <= 0:
                return None
        return self.exits[pid]


class Forked:
    """The part of ``subprocess.Popen`` the tests use, for a process the fork server started."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None
        self.args = ["forked"]

    def poll(self) -> int | None:
        return self.wait(0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self.server.wait(self.pid, timeout)
        if code is None:
            if timeout == 0:
                return None  # type: ignore[return-value] - poll()
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.returncode = code
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_server: ForkServer | None = None


def server() -> ForkServer:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = ForkServer()
    return _server
