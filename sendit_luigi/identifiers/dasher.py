"""The DASHER identifiers backend: Stanford's identifiers API through som's client.

``[identifiers] backend = dasher``. One POST per group of batches (Luigi hands
``GetIdentifiers`` up to ``[sendit] group_size`` batches at once): the batches'
patients become entities, their accession numbers the entities' items, at most
1000 items per entity per request (DASHER's limit).

som 0.2.3's ``Client`` does the HTTP, the bearer token, and the one token
refresh on HTTP 401. It calls ``sys.exit(1)`` when the secrets file is missing
or a 200 reply is not JSON, and it sets no timeout; this module guards the
first and adds the second, and retries 5xx replies, timeouts and dropped
connections with exponential backoff. Whatever still fails becomes a batch
error marked retryable (it is not the input's fault), so the next run tries
again. Input DASHER would reject is a batch error naming the field, never
quoting the value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import requests

from .. import config
from ..errors import BatchError
from ..workdir import Keyed
from . import Identifiers, StudyRequest

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_ITEMS_PER_ENTITY = 1000
ENTITY_SOURCE = "Stanford MRN"
ITEM_SOURCE = "DCM Accession #"


def timestamp(dicom_date: str, field: str) -> str:
    """DICOM DA ``YYYYMMDD`` as DASHER's ``YYYY-MM-DDTHH:MM:SSZ``; ``BatchError`` naming ``field`` if it is not one."""
    try:
        day = dt.datetime.strptime(dicom_date.strip()[:8], "%Y%m%d")
    except ValueError:
        raise BatchError(f"{field} is missing or not a valid date (YYYYMMDD); DASHER needs it as a timestamp") from None
    return day.strftime("%Y-%m-%dT%H:%M:%SZ")


def entity_id(patient_id: str) -> str:
    value = patient_id.strip().replace("-", "")
    if not ID_PATTERN.match(value):
        raise BatchError("PatientID has characters DASHER does not accept (only letters, digits, _ and -)")
    return value


def item_id(accession: str) -> str:
    value = accession.strip()
    if not ID_PATTERN.match(value):
        raise BatchError("AccessionNumber has characters DASHER does not accept (only letters, digits, _ and -)")
    return value


def build_requests(requests_: list[StudyRequest]) -> tuple[list[dict], dict[str, BatchError]]:
    """Group batches by patient into DASHER request bodies; validation failures per batch."""
    errors: dict[str, BatchError] = {}
    entities: dict[str, dict] = {}
    items: dict[str, list[dict]] = defaultdict(list)
    for req in requests_:
        try:
            eid = entity_id(req.patient_id)
            entity = {
                "id": eid,
                "id_source": ENTITY_SOURCE,
                "id_timestamp": timestamp(req.birth_date, "PatientBirthDate"),
                "custom_fields": [],
            }
            item = {
                "id": item_id(req.accession),
                "id_source": ITEM_SOURCE,
                "id_timestamp": timestamp(req.study_date, "StudyDate"),
            }
        except BatchError as exc:
            errors[req.key] = exc
            continue
        entities.setdefault(eid, entity)
        if item not in items[eid]:
            items[eid].append(item)
    bodies: list[dict] = []
    current: list[dict] = []
    for eid, entity in entities.items():
        for start in range(0, len(items[eid]), MAX_ITEMS_PER_ENTITY):
            chunk = items[eid][start : start + MAX_ITEMS_PER_ENTITY]
            if start:  # a patient with more than 1000 studies: the rest in further requests
                bodies.append({"identifiers": [{**entity, "items": chunk}]})
            else:
                current.append({**entity, "items": chunk})
    return ([{"identifiers": current}] if current else []) + bodies, errors


class _TimedClient:
    """som's ``Client`` with a timeout on every request and its exits turned into errors."""

    def __init__(self, cfg: config.dasher):
        from som.api.identifiers import Client
        from som.logger import bot

        bot.level = -10  # som's logger would print what it is told
        secrets = cfg.secrets_file or os.environ.get("STANFORD_CLIENT_SECRETS", "")
        if not secrets or not os.path.exists(secrets):
            raise BatchError(
                "DASHER secrets file not found: set [dasher] secrets_file or STANFORD_CLIENT_SECRETS", retryable=True
            )
        self.secrets = secrets
        try:
            with self._secrets_named():
                self.client = Client(study=cfg.study)
        except SystemExit:
            raise BatchError("som could not read the DASHER secrets file", retryable=True) from None
        self.client.base = cfg.base_url.rstrip("/")
        self.client.post = self._post
        self.timeout = cfg.timeout

    def _post(self, url: str, data: Any = None, return_json: bool = True) -> Any:
        post = functools.partial(requests.post, timeout=self.timeout)
        return self.client.call(url=url, func=post, data=data, return_json=return_json)

    @contextlib.contextmanager
    def _secrets_named(self) -> Iterator[None]:
        """som reads its secrets file's path only from ``STANFORD_CLIENT_SECRETS``, when it starts and when it
        refreshes the token: the variable names ``[dasher] secrets_file`` during som's calls, and is put back after."""
        before = os.environ.get("STANFORD_CLIENT_SECRETS")
        os.environ["STANFORD_CLIENT_SECRETS"] = self.secrets
        try:
            yield
        finally:
            if before is None:
                del os.environ["STANFORD_CLIENT_SECRETS"]
            else:
                os.environ["STANFORD_CLIENT_SECRETS"] = before

    def deidentify(self, body: dict, study: str) -> Any:
        try:
            with self._secrets_named():
                return self.client.deidentify(body, study)
        except SystemExit:
            raise BatchError("DASHER replied 200 with a body that is not JSON", retryable=True) from None


SETTINGS = config.dasher  # the section this backend reads


class Backend:
    """``[identifiers] backend = dasher``: DASHER makes the coded ids (the work folder's secret is not used)."""

    name = "dasher"

    def __init__(self, settings: config.dasher, hasher: Keyed | None = None) -> None:
        self.settings = settings

    def assign(self, requests_: list[StudyRequest]) -> dict[str, Identifiers | BatchError]:
        cfg = self.settings
        bodies, refused = build_requests(requests_)
        results: dict[str, Identifiers | BatchError] = dict(refused)
        if not bodies:
            return dict(results)
        client = _TimedClient(cfg)
        answered: dict[tuple[str, str], tuple[dict, dict]] = {}
        failure: BatchError | None = None
        for body in bodies:
            try:
                reply = self._send(client, body, cfg)
                answered.update(parse_reply(reply))
            except BatchError as exc:
                failure = exc
        for req in requests_:
            if req.key in results:
                continue
            found = answered.get((req.patient_id.strip().replace("-", ""), req.accession.strip()))
            if found is None:
                results[req.key] = failure or BatchError("DASHER's reply has no result for this study", retryable=True)
                continue
            entity, item = found
            results[req.key] = Identifiers(entity["suid"], item["suid"], int(entity["jitter"]), self.name)
        return results

    @staticmethod
    def _send(client: _TimedClient, body: dict, cfg: config.dasher) -> dict:
        wait = cfg.backoff
        for attempt in range(cfg.retries + 1):
            last = attempt == cfg.retries
            try:
                reply = client.deidentify(body, cfg.study)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if last:
                    raise BatchError(
                        f"DASHER did not answer ({type(exc).__name__}) after {attempt + 1} attempts", retryable=True
                    ) from None
            else:
                if isinstance(reply, dict):
                    return reply
                status = reply.status_code
                if status == 401:
                    raise BatchError(
                        "DASHER refused the credentials (HTTP 401) even after refreshing the token", retryable=True
                    )
                if status < 500 or last:
                    raise BatchError(f"DASHER answered HTTP {status} after {attempt + 1} attempts", retryable=True)
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")


def parse_reply(reply: dict) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(entity id, item id) -> (entity result, item result); ``BatchError`` if the shape is wrong."""
    out = {}
    try:
        for entity in reply["results"]:
            check_result(entity, 64)
            for item in entity["items"]:
                check_result(item, 16)
                out[(entity["id"], item["id"])] = (entity, item)
    except KeyError as exc:  # a key this code looked up: one of our own literals, never a value
        raise BatchError(f"DASHER's reply does not have the documented shape (missing {exc})", retryable=True) from None
    except TypeError:  # its text would be the library's
        raise BatchError(
            "DASHER's reply does not have the documented shape (a field of the wrong type)", retryable=True
        ) from None
    return out


def check_result(result: dict, max_length: int) -> None:
    suid = result["suid"]
    if not isinstance(suid, str) or not ID_PATTERN.match(suid) or len(suid) > max_length:
        raise BatchError("DASHER returned a coded id that is empty, too long or has odd characters", retryable=True)
    if not isinstance(result["jitter"], int):
        raise BatchError("DASHER returned a jitter that is not a whole number of days", retryable=True)
