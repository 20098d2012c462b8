"""Two versions side by side in one run: ``python -m benchmarks.compare --base REV``.

Checks out ``REV`` into a temporary git worktree and measures it and the
working tree on the same data, interleaved (base, head, base, head ...), so
that both see the same machine state:

* de-identification throughput, one core (benchmark 1's "ours": stage 1 +
  stage 3 with the leak check and tar.gz) on the CT, small and mixed data;
* end-to-end ``ProcessAll`` (benchmark 2) with ``--workers 1`` and ``2``.

Prints a markdown table of medians and head/base ratios (> 1: head is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .dataset import make_batches

REPO = Path(__file__).resolve().parent.parent
DEID = (
    "import json, sys; from pathlib import Path; from benchmarks import bench_deid as b; "
    "t, n = b.ours(Path(sys.argv[1]), Path(sys.argv[2])); print(json.dumps({'files_s': n / t}))"
)
E2E = (
    "import json, sys; from pathlib import Path; from benchmarks import bench_pipeline as b; "
    "print(json.dumps(b.end_to_end(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 1)))"
)


def measure(tree: Path, code: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--base", required=True, help="the git revision to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=300, help="files per de-identification data set")
    parser.add_argument("--batches", type=int, default=100, help="batches for the end-to-end run (20 files each)")
    parser.add_argument("--output", help="also write the table into this BENCHMARKS.md (its side-by-side section)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sendit-compare-"))
    base = tmp / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.base], cwd=REPO, check=True, capture_output=True
    )
    trees = {"base": base, "head": REPO}
    rows: list[tuple[str, dict[str, list[float]]]] = []
    try:
        for mix in ("ct", "small", "mixed"):
            data = tmp / f"deid-{mix}"
            make_batches(data, 1, args.files, mix)
            folder = next(data.iterdir())
            got: dict[str, list[float]] = {"base": [], "head": []}
            for attempt in range(args.repeats + 1):  # the first round warms the page cache, untimed
                for name, tree in trees.items():
                    work = tmp / f"work-{name}-{mix}-{attempt}"
                    work.mkdir()
                    rate = measure(tree, DEID, str(folder), str(work))["files_s"]
                    if attempt:
                        got[name].append(rate)
            rows.append((f"de-identification, {mix} (files/s)", got))
        e2e: dict[int, dict[str, list[float]]] = {1: {"base": [], "head": []}, 2: {"base": [], "head": []}}
        for attempt in range(args.repeats):
            for name, tree in trees.items():
                out = measure(tree, E2E, str(tmp / f"e2e-{name}-{attempt}"), str(args.batches), "20")
                for workers in (1, 2):
                    e2e[workers][name].append(out[f"batches_s_{workers}"])
        for workers, got in e2e.items():
            rows.append((f"ProcessAll {args.batches} batches x 20 files, --workers {workers} (batches/s)", got))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)
    lines = [
        f"| measured (median of {args.repeats}) | base {args.base} | head | head / base |",
        "| --- | --- | --- | --- |",
    ]
    for label, got in rows:
        b, h = statistics.median(got["base"]), statistics.median(got["head"])
        lines.append(f"| {label} | {b:.1f} | {h:.1f} | {h / b:.2f} |")
    print("\n".join(lines))
    if args.output:
        write_section(Path(args.output), args, lines)
    return 0


def write_section(path: Path, args: argparse.Namespace, table: list[str]) -> None:
    """Put the table into ``path``'s side-by-side section (``benchmarks.run`` keeps it)."""
    import datetime as dt

    from .run import SIDE_BY_SIDE, machine, side_by_side_block

    start, end = SIDE_BY_SIDE
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    block = (
        "\n".join(
            [
                start,
                "## Side by side with an earlier version",
                "",
                f"Measured {dt.date.today().isoformat()} on {machine()}, with "
                f"`python -m benchmarks.compare --base {args.base}`: the working tree (on {head.strip()}) "
                f"and `{args.base}`",
                "on the same data, in turn, in one run. De-identification: stage 1 + stage 3 on one core",
                f"({args.files} files per data set). ProcessAll: local backends, local scheduler.",
                "",
                *table,
                end,
            ]
        )
        + "\n"
    )
    text = path.read_text() if path.exists() else ""
    old = side_by_side_block(text)
    path.write_text(text.replace(old, block) if old else text.rstrip("\n") + "\n\n" + block)


if __name__ == "__main__":
    raise SystemExit(main())
