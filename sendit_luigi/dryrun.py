"""A dry run: which batches a run would take, and what each would produce. Writes nothing.

``luigi --module sendit_luigi ProcessAll --dry-run`` (or ``python -m sendit_luigi
dry-run``). Batches are named by their keys only. Before the first real run there
is no secret key yet; keys are then shown from a throw-away key and marked so.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from . import config
from .batches import batch, scan, status, upload_settled
from .inputs import walk_files
from .storage import object_name
from .workdir import Keyed, _parse_secret


def plan(max_batches: int = 0) -> dict:
    secret = config.sendit.get().secret_path()
    provisional = not secret.exists()
    hasher = Keyed(secrets.token_hex(32).encode() if provisional else _parse_secret(secret))
    found = scan(hasher)
    rows = []
    for key in sorted(found):
        b = batch(key)
        state, result = status(b) if b.dir.exists() else ("new", None)
        folder = Path(found[key])
        files = [p for p in walk_files(folder)]
        if result and result.get("status") == "done":
            output = object_name(result)
        elif state in ("empty", "error"):
            output = "nothing (ended " + state + ")"
        else:
            output = (
                f"Collection/{config.storage.get().collection}/Entity/<coded patient>/"
                "<coded patient>_<shifted date>_<coded accession>.tar.gz + 1 metadata row"
            )
        rows.append(
            {
                "key": key,
                "status": state,
                "files": len(files),
                "megabytes": sum(p.stat().st_size for p in files if p.is_file()) / 1e6,
                "output": output,
                "settled": not provisional and b.dir.exists() and upload_settled(b),
            }
        )
    todo = [r for r in rows if not r["settled"]]
    if max_batches > 0:
        todo = todo[:max_batches]
    return {"provisional": provisional, "batches": rows, "todo": todo}


def render(p: dict) -> str:
    lines = [
        "Dry run: nothing is written.",
        f"{len(p['batches'])} batches found; this run would work on {len(p['todo'])}:",
    ]
    if p["provisional"]:
        lines.append("(no secret key yet: the keys below are provisional and will differ in the real run)")
    for r in p["todo"]:
        lines.append(
            f"  {r['key']}  {r['status']:<15} {r['files']:>6} files {r['megabytes']:>9.1f} MB  -> {r['output']}"
        )
    done = len(p["batches"]) - len(p["todo"])
    if done:
        lines.append(f"{done} other batches are done or left for a later run.")
    lines.append(
        f"work files: {config.sendit.get().work_path()}/batches/<key>/ "
        "(headers.json, identifiers.json, study.tar.gz, result.json, uploaded.json)"
    )
    return "\n".join(lines)
