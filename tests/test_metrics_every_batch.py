"""Scenario: a run over some batches (watch mode's ready list, --max-batches) rewrites metrics.csv with every
batch the work folder knows, not only the ones it saw. Seen: 3 batches processed, then 1 row."""

from __future__ import annotations

import json

from conftest import make_study


def test_a_run_over_a_ready_list_keeps_every_batch_in_the_metrics(pipe):
    for n in (1, 2, 3):
        pipe.add(make_study(n), files=1)
    assert pipe.run().code == 0
    assert len(pipe.metrics()) == 3
    keys = {d.name for d in pipe.batch_dirs().values()}
    pipe.add(make_study(4), files=1)  # still being copied: not on the ready list
    ready = pipe.root / "ready.json"
    ready.write_text(json.dumps([sorted(keys)[0]]))  # watch mode lists the folders that finished copying
    pipe.settings["sendit.ready_file"] = str(ready)
    assert pipe.run().code == 0
    assert set(pipe.metrics()["batch"]) == keys
    ready.write_text(json.dumps([]))  # a cycle that found nothing new
    assert pipe.run().code == 0
    assert set(pipe.metrics()["batch"]) == keys
