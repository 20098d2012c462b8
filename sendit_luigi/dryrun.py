"""A dry run: which batches a run would take, and what each would produce.

``luigi --module sendit_luigi ProcessAll --dry-run`` (or ``python -m sendit_luigi
dry-run``). Batches are named by their keys only. It writes nothing that holds PHI:
only the secret key, on first use (the real run would make the same one), so that
the keys it lists are the keys the real run uses, and ``--max-batches N`` lists
exactly the batches the real run takes.
"""

from __future__ import annotations

from pathlib import Path

from .batches import batch, scan, status, upload_settled, with_row, work_hash
from .inputs import walk_files
from .storage import object_name


def plan(max_batches: int, collection: str) -> dict:
    found = scan(work_hash())  # creates the secret key on first use: it holds no PHI, and keys are then stable
    rows = []
    for key in sorted(found):
        b = batch(key)
        state, result = status(b) if b.dir.exists() else ("new", None)
        folder = Path(found[key])
        files = [p for p in walk_files(folder)]
        if result and result.get("status") == "done":
            output = object_name(with_row(b, result), collection)
        elif state in ("empty", "error"):
            output = "nothing (ended " + state + ")"
        else:
            output = (
                f"Collection/{collection}/Entity/<coded patient>/"
                "<coded patient>_<shifted date>_<coded accession>.tar.gz + 1 metadata row"
            )
        rows.append(
            {
                "key": key,
                "status": state,
                "files": len(files),
                "megabytes": sum(p.stat().st_size for p in files if p.is_file()) / 1e6,
                "output": output,
                "settled": b.dir.exists() and upload_settled(b),
            }
        )
    todo = [r for r in rows if not r["settled"]]
    if max_batches > 0:
        todo = todo[:max_batches]
    return {"batches": rows, "todo": todo}


def render(p: dict, work_dir: Path) -> str:
    lines = [
        "Dry run: nothing is written.",
        f"{len(p['batches'])} batches found; this run would work on {len(p['todo'])}:",
    ]
    for r in p["todo"]:
        lines.append(
            f"  {r['key']}  {r['status']:<15} {r['files']:>6} files {r['megabytes']:>9.1f} MB  -> {r['output']}"
        )
    done = len(p["batches"]) - len(p["todo"])
    if done:
        lines.append(f"{done} other batches are done or left for a later run.")
    lines.append(
        f"work files: {work_dir}/batches/<key>/ "
        "(headers.json, identifiers.json, study.tar.gz, row.json, result.json, uploaded.json)"
    )
    return "\n".join(lines)
