"""`apply --incremental` through the CLI, as a scheduled re-index job runs it: rows of the source (Qdrant
local mode) are changed (vector, or payload only), added and deleted between runs; the Milvus Lite
destination is then checked against an independent reference built in the test (the test's own copy of the
source rows, translated here with the saved translator), and only the changed rows are rewritten."""
from __future__ import annotations

import json

import numpy as np
import pytest

import shared_data
from _workflow_helpers import fit_translator, need_data, read_all, rows_of, run_cli
from connectors import open_store
from connectors.base import Batch


def _write(uri: str, rows: dict, create: bool = False) -> None:
    """Upsert {id: (vector, payload)} into the store."""
    ids = sorted(rows)
    with open_store(uri) as s:
        if create:
            s.create(384, "cosine", id_type="int")
        s.upsert(Batch(ids, np.stack([rows[i][0] for i in ids]), [rows[i][1] for i in ids]))
        s.flush()


def test_incremental_from_the_cli_copies_changes_additions_and_deletions(tmp_path):
    need_data()
    pytest.importorskip("qdrant_client")
    pytest.importorskip("pymilvus")
    translator = fit_translator(tmp_path / "translator")
    source, dest = f"qdrant:{tmp_path / 'src'}#docs", f"milvus:{tmp_path / 'dst.db'}#docs"
    first_rows, extra_rows = rows_of("A", 0, 300), rows_of("A", 300, 60)
    vecs = shared_data.embeddings("minilm", np.concatenate([first_rows, extra_rows]))
    # The test's own copy of the source: {id: (vector, payload)}; ids are the reference row numbers.
    truth = {int(r): (vecs[i], {"text": f"doc {int(r)}", "v": 1}) for i, r in enumerate(first_rows)}
    _write(source, truth, create=True)
    args = ["apply", "--translator", str(translator), "--source", source, "--dest", dest,
            "--state-dir", str(tmp_path / "state"), "--batch-size", "64", "--incremental", "--delete-missing",
            "--json"]
    first = run_cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["rows_written"] == 300

    ids = sorted(truth)
    new_vector = ids[0:20]        # another text's vector (a re-embedded document)
    new_payload = ids[20:30]      # same vector, edited payload
    deleted = ids[30:45]
    changed = {}
    for k, i in enumerate(new_vector):
        changed[i] = (vecs[300 + 40 + k], {"text": f"doc {i} re-embedded", "v": 2})
    for i in new_payload:
        changed[i] = (truth[i][0], {"text": f"doc {i} edited", "v": 2})
    added = {int(r): (vecs[300 + k], {"text": f"new doc {int(r)}", "v": 1}) for k, r in enumerate(extra_rows[:30])}
    _write(source, {**changed, **added})
    with open_store(source) as s:
        s.delete(deleted)
        s.flush()
    truth.update(changed)
    truth.update(added)
    for i in deleted:
        del truth[i]

    second = run_cli(args, tmp_path)
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    assert out["rows_written"] == len(changed) + len(added) == 60
    assert out["rows_skipped"] == 300 - len(deleted) - len(changed)
    assert out["deleted_in_source"] == len(deleted) and out["deleted_from_dest"] == len(deleted)
    assert out["dest_count"] == len(truth) == 315

    # The destination against the reference: every id once, its payload, its translated vector.
    from translators import load_translator

    d_ids, d_vecs, d_pays = read_all(dest)
    assert len(d_ids) == len(set(d_ids)) and sorted(d_ids) == sorted(truth)
    want = load_translator(translator)(np.stack([truth[i][0] for i in d_ids]))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = d_vecs / np.linalg.norm(d_vecs, axis=1, keepdims=True)
    assert np.abs(got - want).max() < 1e-4
    for i, pay in zip(d_ids, d_pays):
        assert {k: v for k, v in pay.items() if not k.startswith("_v2v")} == truth[i][1], i

    third = run_cli(args, tmp_path)  # nothing changed since: nothing rewritten
    assert third.returncode == 0, third.stderr
    out = json.loads(third.stdout)
    assert out["rows_written"] == 0 and out["rows_skipped"] == 315 and out["deleted_in_source"] == 0
