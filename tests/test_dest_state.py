"""State kept with the destination (Store.read_state/write_state on every embedded engine), `status`, and
the faults around it: a full disk mid-apply, a torn local checkpoint, a half-written translator directory.
Real engines and the real CLI throughout."""
from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _workflow_helpers import DEST_ENGINES as ENGINES
from _workflow_helpers import (
    assert_exact_copy, cli_env, fit_translator, need_data, read_all, rows_of, run_cli, start_paused, wait_paused,
    write_store,
)
from connectors import open_store
from connectors.base import Batch
from connectors.errors import StoreUsageError, UnreadableStoreError

N, BATCH = 600, 50


@pytest.mark.parametrize("kind", list(ENGINES))
def test_state_is_kept_with_the_store_and_survives_reopening(tmp_path, kind, real_vectors):
    uri = ENGINES[kind](tmp_path)
    with open_store(uri) as s:
        assert s.keeps_state and s.read_state("apply") is None  # nothing yet, the store does not exist
        s.create(384, "cosine")
        s.upsert(Batch([1, 2, 3], real_vectors(3)))
        s.flush()
        s.write_state("apply", {"cursor": [7, "x"], "rows": 3})
        s.write_state("reembed", {"done": 1})
        s.write_state("apply", {"cursor": [8, "y"], "rows": 6})  # replaced, not merged
        with pytest.raises(StoreUsageError, match="short lower-case name"):
            s.write_state("Bad Key", {})
    with open_store(uri) as s:
        assert s.read_state("apply") == {"cursor": [8, "y"], "rows": 6}
        assert s.read_state("reembed") == {"done": 1}
        s.write_state("reembed", None)
        assert s.read_state("reembed") is None and s.count() == 3  # the records are not rows
        assert [sorted(b.ids) for b in s.iter_batches(10)] == [[1, 2, 3]]


def test_a_torn_state_file_is_refused_with_the_fix(tmp_path, real_vectors):
    uri = ENGINES["faiss"](tmp_path)
    with open_store(uri) as s:
        s.create(384, "cosine")
        s.write_state("apply", {"rows": 1})
    state_file = tmp_path / "dest.faiss.v2v-state.json"
    state_file.write_text(state_file.read_text()[:7])
    with open_store(uri) as s, pytest.raises(UnreadableStoreError, match="Fix: delete it"):
        s.read_state("apply")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_data()
    root = tmp_path_factory.mktemp("dest_state")
    return {"root": root, "source": write_store(f"faiss:{root / 'source.faiss'}", rows_of("A", 0, N)),
            "translator": fit_translator(root / "translator")}


def _args(world, dest, *extra, translator=None):
    return ["apply", "--translator", str(translator or world["translator"]), "--source", world["source"],
            "--dest", dest, "--batch-size", str(BATCH), "--json", *extra]


def _status(dest: str, cwd: Path) -> dict:
    r = run_cli(["status", "--dest", dest, "--json"], cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_from_another_folder_shows_owner_progress_and_completion(world, tmp_path):
    dest, gate = ENGINES["parquet"](tmp_path), tmp_path / "gate"
    proc = start_paused(_args(world, dest, "--checkpoint-seconds", "0"), tmp_path / "a", gate, 4)
    wait_paused(gate, proc)
    proc.kill()
    proc.wait(timeout=60)
    (tmp_path / "b").mkdir()
    st = _status(dest, tmp_path / "b")  # another folder: only the destination's own record can say this
    assert st["record_from"] == "destination" and st["exists"]
    assert st["owner"]["source"] == world["source"]
    assert st["owner"]["translator_fingerprint"] and not st["progress"]["completed"]
    assert st["progress"]["rows_read"] <= 4 * BATCH and st["count"] >= st["progress"]["rows_written"]
    assert st["lease"] is None and st["last_error"] is None  # a local destination holds no lease
    text = run_cli(["status", "--dest", dest], tmp_path / "b")
    assert text.returncode == 0 and "owner:" in text.stdout and "progress:" in text.stdout

    done = run_cli(_args(world, dest), tmp_path / "b")
    assert done.returncode == 0, done.stderr
    st = _status(dest, tmp_path)
    assert st["progress"]["completed"] and st["progress"]["rows_read"] == N and st["count"] == N

    missing = _status(ENGINES["faiss"](tmp_path / "nowhere"), tmp_path)
    assert missing["exists"] is False and missing["owner"] is None


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_disk_full_mid_apply_is_a_clear_error_and_the_rerun_completes(world, tmp_path):
    # A FAISS file is rewritten whole at every commit: with files capped at 400 kB the commit of the
    # ~260th row fails (the index of 600 rows is ~920 kB), as it would on a full disk.
    dest = ENGINES["faiss"](tmp_path)
    (tmp_path / "a").mkdir()
    r = subprocess.run([sys.executable, "-m", "v2v_migrate.cli", *_args(world, dest, "--checkpoint-seconds", "0")],
                       cwd=tmp_path / "a", env=cli_env(), capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(400_000))
    assert r.returncode == 3, r.stderr
    assert "ran out of space" in r.stderr and "Fix: free space" in r.stderr and "Traceback" not in r.stderr
    ids, vecs, pays = read_all(dest)  # still readable: the last committed file, whole
    assert 0 < len(ids) < N and len(set(ids)) == len(ids) and all(p for p in pays)
    st = _status(dest, tmp_path)
    assert "File too large" in st["last_error"] and st["progress"]["rows_read"] == len(ids)

    (tmp_path / "b").mkdir()
    done = run_cli(_args(world, dest), tmp_path / "b")  # space is back; another folder
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resumed_after_rows"] == len(ids)
    assert_exact_copy(world["source"], dest, world["translator"])
    assert _status(dest, tmp_path)["last_error"] is None


def test_a_torn_local_checkpoint_is_repaired_from_the_destination_or_refused(world, tmp_path):
    dest, state, gate = ENGINES["qdrant-edge"](tmp_path), tmp_path / "state", tmp_path / "gate"
    proc = start_paused(_args(world, dest, "--state-dir", str(state), "--checkpoint-seconds", "0"), tmp_path,
                        gate, 5)
    wait_paused(gate, proc)
    proc.kill()
    proc.wait(timeout=60)
    [cp_file] = state.glob("*/checkpoint.json")
    torn = cp_file.read_text()[:40]  # a crash mid-write (the writer replaces atomically, but disks lie)
    cp_file.write_text(torn)
    done = run_cli(_args(world, dest, "--state-dir", str(state)), tmp_path)
    assert done.returncode == 0, done.stderr  # the destination's record wins; the cache is rewritten
    assert json.loads(cp_file.read_text())["completed"]
    assert_exact_copy(world["source"], dest, world["translator"])

    # Without a record with the destination, a torn checkpoint is refused, never half-loaded.
    with open_store(dest) as s:
        s.write_state("apply", None)
    cp_file.write_text(torn)
    refused = run_cli(_args(world, dest, "--state-dir", str(state)), tmp_path)
    assert refused.returncode == 5 and "unreadable" in refused.stderr and "--restart" in refused.stderr


@pytest.mark.parametrize("damage", ["truncated weights", "config only"])
def test_a_half_written_translator_directory_is_refused_and_nothing_is_written(world, tmp_path, damage):
    tdir = tmp_path / "translator"
    shutil.copytree(world["translator"], tdir)
    weights = tdir / "model.safetensors"
    if damage == "truncated weights":  # a copy or a crash that stopped half-way through the file
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:  # train killed before it wrote the weights
        weights.unlink()
    dest = ENGINES["milvus"](tmp_path)
    r = run_cli(_args(world, dest, translator=tdir), tmp_path)
    assert r.returncode == 2 and "Fix:" in r.stderr and "Traceback" not in r.stderr
    assert "model.safetensors" in r.stderr
    assert not (tmp_path / "dest.db").exists()
