"""A small DASHER-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

It follows DASHER's documented request and response shapes (``POST
{base}/v1/uid/{study}`` with a bearer token; token refresh at ``token_uri``),
validates every request body strictly, and answers deterministically: the same
id always gets the same suid and jitter. ``script`` queues misbehaviours for the
next uid requests: ``"401"``, ``"500"``, ``"malformed"`` (200, not JSON) and
``"timeout"`` (answers after ``slow`` seconds).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ID = re.compile(r"^[A-Za-z0-9_-]+$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def suid(kind: str, value: str) -> str:
    return kind + _digest(kind + value)[:9].upper()


def jitter(entity: str) -> int:
    return -(int(_digest("jitter" + entity)[:6], 16) % 30 + 1)


def jittered(timestamp: str, days: int) -> str:
    moment = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S-0700")


def schema_problems(body) -> list[str]:
    """Everything in ``body`` that breaks DASHER's documented request shape."""
    problems = []
    if not isinstance(body, dict) or set(body) != {"identifiers"} or not isinstance(body["identifiers"], list):
        return ["body must be {'identifiers': [...]}"]
    for entity in body["identifiers"]:
        if set(entity) != {"id", "id_source", "id_timestamp", "custom_fields", "items"}:
            problems.append(f"entity keys {sorted(entity)}")
            continue
        if not ID.match(str(entity["id"])):
            problems.append("entity id characters")
        if entity["id_source"] != "Stanford MRN":
            problems.append("entity id_source")
        if not TIMESTAMP.match(str(entity["id_timestamp"])):
            problems.append("entity id_timestamp form")
        if not isinstance(entity["custom_fields"], list):
            problems.append("custom_fields")
        if not isinstance(entity["items"], list) or not 1 <= len(entity["items"]) <= 1000:
            problems.append("items count")
            continue
        for item in entity["items"]:
            if set(item) != {"id", "id_source", "id_timestamp"}:
                problems.append(f"item keys {sorted(item)}")
            elif not ID.match(str(item["id"])) or item["id_source"] != "DCM Accession #":
                problems.append("item id or id_source")
            elif not TIMESTAMP.match(str(item["id_timestamp"])):
                problems.append("item id_timestamp form")
    return problems


def answer(body: dict) -> dict:
    results = []
    for entity in body["identifiers"]:
        days = jitter(entity["id"])
        results.append(
            {
                "id": entity["id"],
                "id_source": entity["id_source"],
                "suid": suid("E", entity["id"]),
                "jitter": days,
                "jittered_timestamp": jittered(entity["id_timestamp"], days),
                "custom_fields": entity["custom_fields"],
                "items": [
                    {
                        "id": item["id"],
                        "id_source": item["id_source"],
                        "suid": suid("I", item["id"]),
                        "jitter": days,
                        "jittered_timestamp": jittered(item["id_timestamp"], days),
                    }
                    for item in entity["items"]
                ],
            }
        )
    return {"results": results}


class DasherServer:
    """Start with ``with DasherServer() as server:``; ``server.base`` is the API base URL."""

    def __init__(self, latency: float = 0.0, slow: float = 3.0):
        self.latency = latency
        self.slow = slow
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.paths: list[str] = []
        self.access, self.refresh = "access-1", "refresh-1"
        self.refreshes = 0
        self._lock = threading.Lock()
        self.arrived = threading.Event()  # set by the first uid request
        self._open = threading.Event()  # uid requests wait for it (see hold)
        self._open.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path == "/token":
                    return server._token(self, raw)
                return server._uid(self, raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> DasherServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def hold(self) -> None:
        """Make uid requests wait, until ``release()``: a run is then inside stage 2 for as long as a test needs."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def write_secrets(self, path: Path) -> Path:
        path.write_text(
            json.dumps({"accessToken": self.access, "refreshToken": self.refresh, "token_uri": f"{self.base}/token"})
        )
        return path

    @staticmethod
    def _send(handler, status: int, body: bytes, kind: str = "application/json") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _token(self, handler, raw: bytes) -> None:
        with self._lock:
            if json.loads(raw or b"{}").get("refreshToken") != self.refresh:
                return self._send(handler, 400, b'{"error": "bad refresh token"}')
            self.refreshes += 1
            self.access, self.refresh = f"access-{self.refreshes + 1}", f"refresh-{self.refreshes + 1}"
            body = json.dumps({"accessToken": self.access, "refreshToken": self.refresh}).encode()
        self._send(handler, 200, body)

    def _uid(self, handler, raw: bytes) -> None:
        with self._lock:
            self.paths.append(handler.path)
            behaviour = self.script.pop(0) if self.script else ""
        self.arrived.set()
        self._open.wait(120)
        if self.latency:
            time.sleep(self.latency)
        if behaviour == "401" or handler.headers.get("Authorization") != f"Bearer {self.access}":
            return self._send(handler, 401, b'{"error": "unauthorized"}')
        if behaviour == "500":
            return self._send(handler, 500, b'{"error": "server error"}')
        if behaviour == "malformed":
            return self._send(handler, 200, b"<html>Please log in</html>", "text/html")
        if behaviour == "timeout":
            time.sleep(self.slow)
        body = json.loads(raw)
        problems = schema_problems(body)
        with self._lock:
            self.requests.append(body)
            self.problems.extend(problems)
        if problems:
            return self._send(handler, 400, json.dumps({"errors": problems}).encode())
        self._send(handler, 200, json.dumps(answer(body)).encode())
