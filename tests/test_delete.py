"""Deleting by id on every writable engine, and `apply --incremental --delete-missing` through the CLI.

Each engine is real (FAISS file, Parquet folder, Milvus Lite, Qdrant local mode, Qdrant Edge); the expected
state is computed independently (the set of ids written minus the set deleted), never read from the code
under test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from _workflow_helpers import fit_translator, need_data, read_all, rows_of, run_cli, write_store
from connectors import open_store

ENGINES = {
    "faiss": lambda d: f"faiss:{d / 'store.faiss'}",
    "parquet": lambda d: f"parquet:{d / 'store_parquet'}",
    "milvus": lambda d: f"milvus:{d / 'store.db'}#docs",
    "qdrant": lambda d: f"qdrant:{d / 'qdrant'}#docs",
    "qdrant-edge": lambda d: f"qdrant-edge:{d / 'edge'}#docs",
}


def _skip_missing(kind: str) -> None:
    pytest.importorskip({"milvus": "pymilvus", "qdrant": "qdrant_client", "qdrant-edge": "qdrant_edge"}.get(kind, "faiss"))


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_delete_by_id_is_idempotent_and_durable(kind, tmp_path):
    need_data()
    _skip_missing(kind)
    uri = ENGINES[kind](tmp_path)
    rows = rows_of("A", 0, 200)
    write_store(uri, rows)
    ids = [int(r) for r in rows]
    gone = ids[10:30] + ids[150:155]
    with open_store(uri) as s:
        s.delete(gone + [10**12])  # an id never written is ignored
        s.delete(gone[:5])          # deleting again is harmless
        s.flush()
    with open_store(uri) as s:      # reopened: the deletion was made durable by flush()
        assert s.count() == 200 - len(gone)
        assert s.get(gone).ids == []
        kept = [x for x in ids if x not in set(gone)]
        got = s.get(kept)
        assert sorted(got.ids) == sorted(kept)
        # a deleted id can be written again
        back = s.get(kept[:1])
        from connectors.base import Batch

        s.upsert(Batch([gone[0]], back.vectors, back.payloads))
        s.flush()
        assert s.count() == 200 - len(gone) + 1
    stored, _, _ = read_all(uri)
    assert sorted(stored) == sorted(kept + [gone[0]])  # no duplicates, nothing else


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_incremental_delete_missing_removes_rows_gone_from_the_source(kind, tmp_path):
    need_data()
    _skip_missing(kind)
    translator = fit_translator(tmp_path / "translator")
    source = write_store(f"parquet:{tmp_path / 'source'}", rows_of("A", 0, 300))
    dest, state = ENGINES[kind](tmp_path / "dest"), tmp_path / "state"
    args = ["apply", "--translator", str(translator), "--source", source, "--dest", dest,
            "--state-dir", str(state), "--batch-size", "64", "--json", "--incremental"]
    first = run_cli(args, tmp_path)
    assert first.returncode == 0, first.stderr

    removed = [int(r) for r in rows_of("A", 0, 300)[::10]]  # 30 rows leave the source
    with open_store(source) as s:
        s.delete(removed)
        s.flush()
    listed = run_cli(args, tmp_path)  # without --delete-missing: reported and listed, kept in dest
    assert listed.returncode == 0, listed.stderr
    out = json.loads(listed.stdout)
    assert out["deleted_in_source"] == 30 and out["deleted_from_dest"] == 0 and out["dest_count"] == 300

    pruned = run_cli(args + ["--delete-missing"], tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    out = json.loads(pruned.stdout)
    assert out["deleted_in_source"] == 30 and out["deleted_from_dest"] == 30 and out["rows_written"] == 0
    src_ids, _, _ = read_all(source)
    dest_ids, dest_vecs, _ = read_all(dest)
    assert len(dest_ids) == 270 and sorted(dest_ids) == sorted(src_ids)
    assert not set(removed) & set(dest_ids) and np.isfinite(dest_vecs).all()

    again = run_cli(args + ["--delete-missing"], tmp_path)  # a rerun finds nothing left to delete
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["deleted_in_source"] == 0
