"""`apply --dry-run` against EXISTING destinations holding rows (Milvus Lite, Qdrant local mode, Qdrant Edge):
it writes nothing (the destination's rows, vectors and payloads unchanged, no state dir, checkpoint or lock
file anywhere) and reports what a real apply would do."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from _workflow_helpers import fit_translator, need_data, read_all, rows_of, run_cli, write_store

DESTS = {
    "milvus-lite": lambda d: f"milvus:{d / 'dst.db'}#docs",
    "qdrant-local": lambda d: f"qdrant:{d / 'qdrant'}#docs",
    "qdrant-edge": lambda d: f"qdrant-edge:{d / 'edge'}#docs",
}


def _files(root) -> set:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("dry_run")
    # A minilm -> e5 translator (384 -> 384), so that the existing 384-d destinations fit it.
    return {"translator": fit_translator(root / "translator"),
            "source": write_store(f"faiss:{root / 'src.faiss'}", rows_of("A", 0, 300))}


@pytest.mark.parametrize("engine", list(DESTS))
def test_dry_run_against_an_existing_destination_writes_nothing(world, tmp_path, engine):
    work = tmp_path / "work"
    work.mkdir()
    dest = DESTS[engine](work)
    # The destination already holds 80 rows of other texts (e5 vectors, ids the source does not have).
    write_store(dest, rows_of("B", 0, 80), model="e5")
    before_ids, before_vecs, before_pays = read_all(dest)
    before_files = _files(work)
    locks = tmp_path / "locks"
    args = ["apply", "--translator", str(world["translator"]), "--source", world["source"], "--dest", dest,
            "--dry-run", "--json"]

    res = run_cli(args + ["--allow-existing"], work, V2V_LOCK_DIR=str(locks))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["dry_run"] is True and out["written"] == 0
    assert out["dest_exists"] is True and out["dest_count"] == 80
    assert out["action"] == "write into the existing destination" and out["rows_to_write"] == 300
    assert out["source_count"] == 300 and out["dest_dim"] == 384 and out["sample_translated"] == 300

    if engine == "milvus-lite":  # one engine for these two: each CLI run costs seconds
        refused = run_cli(args, work, V2V_LOCK_DIR=str(locks))  # foreign rows: refused as a real apply would be
        assert refused.returncode == 5 and "--allow-existing" in refused.stderr, refused.stderr
        # the text a user reads says what the JSON says
        plain = run_cli([a for a in args if a != "--json"] + ["--allow-existing"], work, V2V_LOCK_DIR=str(locks))
        assert plain.returncode == 0, plain.stderr
        assert "dry run: would write into the existing destination -> 300 rows" in plain.stdout
        assert "nothing written" in plain.stdout

    # Nothing written: no state dir (default ./.v2v-state in the cwd), no lock, no new file anywhere.
    assert not (work / ".v2v-state").exists() and not locks.exists()
    assert _files(work) == before_files
    after_ids, after_vecs, after_pays = read_all(dest)
    assert sorted(after_ids) == sorted(before_ids) and len(after_ids) == 80
    order_b, order_a = np.argsort(before_ids), np.argsort(after_ids)
    np.testing.assert_array_equal(after_vecs[order_a], before_vecs[order_b])
    assert [after_pays[i] for i in order_a] == [before_pays[i] for i in order_b]


def _snapshot(root) -> dict:
    """{path: mtime} of every file under root but the Edge engine's own segments, WAL and config (the engine
    rewrites them whenever a shard is opened, also to read)."""
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.relpath(os.path.join(d, f), root)
            if not ({"segments", "wal", "edge_config.json"} & set(p.split(os.sep))):
                out[p] = os.stat(os.path.join(root, p)).st_mtime_ns
    return out


def test_dry_run_after_a_completed_apply_says_nothing_to_do_and_touches_no_state(world, tmp_path):
    dest = f"qdrant-edge:{tmp_path / 'edge'}#docs"
    base = ["apply", "--translator", str(world["translator"]), "--source", world["source"], "--dest", dest,
            "--state-dir", str(tmp_path / "state"), "--json"]
    env = {"V2V_LOCK_DIR": str(tmp_path / "locks")}
    done = run_cli(base, tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dest_count"] == 300
    # the whole folder, not only --state-dir: wherever apply keeps its state, a dry run must not rewrite it
    state_before = _snapshot(tmp_path)
    ids_before, vecs_before, _ = read_all(dest)
    res = run_cli(base + ["--dry-run"], tmp_path, **env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["action"].startswith("nothing to do") and out["rows_to_write"] == 0 and out["dest_count"] == 300
    assert _snapshot(tmp_path) == state_before  # the checkpoint was read, not rewritten; no file added
    ids_after, vecs_after, _ = read_all(dest)
    assert sorted(ids_after) == sorted(ids_before)
    np.testing.assert_array_equal(vecs_after[np.argsort(ids_after)], vecs_before[np.argsort(ids_before)])
