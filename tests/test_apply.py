"""apply on real engines with a real translator: crash (kill -9) and Ctrl-C mid-run then resume -> exactly the
source's rows; one writer per destination; --incremental; --dry-run; refusals (foreign data, foreign checkpoint)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from _workflow_helpers import (
    assert_exact_copy, fit_translator, need_data, read_all, rows_of, run_cli, start_paused, wait_paused,
    write_store,
)
from v2v_migrate.apply import apply_migration
from v2v_migrate.checkpoint import load_checkpoint, state_dir_for
from connectors.errors import DestinationNotEmptyError, DimensionMismatchError, StoreLockedError
from v2v_migrate.errors import CheckpointError

N = 2000  # rows in the source: 20 batches of 100


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A FAISS source of N real minilm vectors with payloads, and a real minilm->e5 translator."""
    need_data()
    root = tmp_path_factory.mktemp("apply")
    src = write_store(f"faiss:{root / 'source.faiss'}", rows_of("A", 0, N))
    return {"root": root, "source": src, "translator": fit_translator(root / "translator")}


DESTS = {
    "milvus": lambda d: f"milvus:{d / 'dest.db'}#docs",
    "faiss": lambda d: f"faiss:{d / 'dest.faiss'}",
    "parquet": lambda d: f"parquet:{d / 'dest_parquet'}",
}


def _apply_args(world, dest: str, state: Path, *extra: str) -> list[str]:
    return ["apply", "--translator", str(world["translator"]), "--source", world["source"], "--dest", dest,
            "--batch-size", "100", "--state-dir", str(state), "--json", *extra]


@pytest.mark.parametrize("kind", ["milvus", "faiss"])
def test_kill9_mid_run_then_resume_gives_exactly_the_source_rows(world, tmp_path, kind):
    dest, state, gate = DESTS[kind](tmp_path), tmp_path / "state", tmp_path / "gate"
    # --checkpoint-seconds 0: a commit after every batch; the translator pauses before its 6th batch
    proc = start_paused(_apply_args(world, dest, state, "--checkpoint-seconds", "0"), tmp_path, gate, 5)
    wait_paused(gate, proc)
    # While it runs, a second apply on the same destination is refused, naming the holder.
    with pytest.raises(StoreLockedError, match=str(proc.pid)):
        apply_migration(world["translator"], world["source"], dest, state_dir=state, batch_size=100)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait(timeout=30)

    out = apply_migration(world["translator"], world["source"], dest, state_dir=state, batch_size=100)
    assert out["resumed"] and out["completed"] and 0 <= out["resumed_after_rows"] <= 500
    assert out["rows_read"] == N - out["resumed_after_rows"]
    assert out["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])


@pytest.mark.parametrize("kind", ["parquet"])
def test_ctrl_c_checkpoints_and_exits_130_then_resume(world, tmp_path, kind):
    dest, state, gate = DESTS[kind](tmp_path), tmp_path / "state", tmp_path / "gate"
    proc = start_paused(_apply_args(world, dest, state), tmp_path, gate, 5)
    wait_paused(gate, proc)
    proc.send_signal(signal.SIGINT)
    (gate / "go").touch()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and not summary["completed"]
    assert "Traceback" not in stderr
    cp = load_checkpoint(state_dir_for(dest, state))
    # The in-flight batch was finished and checkpointed: the checkpoint holds every row written.
    assert cp.rows_read == summary["resumed_after_rows"] + summary["rows_read"] < N

    done = run_cli(_apply_args(world, dest, state), tmp_path)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["resumed"] and final["rows_read"] == N - cp.rows_read and final["dest_count"] == N
    assert_exact_copy(world["source"], dest, world["translator"])


def test_incremental_copies_only_new_and_changed_rows_and_reports_deletions(world, tmp_path):
    src = write_store(f"faiss:{tmp_path / 'src.faiss'}", rows_of("A", 0, 1000))
    dest, state = f"faiss:{tmp_path / 'dest.faiss'}", tmp_path / "state"
    first = apply_migration(world["translator"], src, dest, state_dir=state)
    assert first["rows_written"] == 1000

    write_store(src, rows_of("A", 1000, 100))  # 100 new source rows
    added = apply_migration(world["translator"], src, dest, state_dir=state, incremental=True)
    assert added["rows_written"] == 100 and added["rows_skipped"] == 1000
    again = apply_migration(world["translator"], src, dest, state_dir=state, incremental=True)
    assert again["rows_written"] == 0 and again["rows_skipped"] == 1100

    # A changed payload and a changed vector are copied again, nothing else.
    changed_rows = rows_of("A", 0, 2)
    from connectors import open_store
    from connectors.base import Batch
    import shared_data

    with open_store(src) as s:
        got = s.get([int(r) for r in changed_rows])
        pays = [dict(p, text=p["text"] + " (edited)") for p in got.payloads]
        vecs = got.vectors.copy()
        vecs[1] = shared_data.embeddings("minilm", rows_of("A", 5000, 1))[0]
        s.upsert(Batch(got.ids, vecs, pays))
        s.flush()
    edited = apply_migration(world["translator"], src, dest, state_dir=state, incremental=True)
    assert edited["rows_written"] == 2
    assert_exact_copy(src, dest, world["translator"])

    # Deletions: rows gone from the source are detected and listed, and kept in the destination unless
    # --delete-missing is given (tests/test_delete.py covers that on every engine).
    Path(src.split(":", 1)[1]).unlink()
    for side in Path(src.split(":", 1)[1]).parent.glob("src.faiss.*"):
        side.unlink()
    write_store(src, rows_of("A", 0, 1050))
    pruned = apply_migration(world["translator"], src, dest, state_dir=state, incremental=True)
    # (the two edited rows are back to their original content: copied again)
    assert pruned["deleted_in_source"] == 50 and pruned["rows_written"] == 2
    listed = [json.loads(x) for x in Path(pruned["deleted_ids_file"]).read_text().split()]
    assert sorted(listed) == sorted(int(r) for r in rows_of("A", 1050, 50))
    assert pruned["dest_count"] == 1100
    # --restart forgets the hashes: everything is copied again.
    redo = apply_migration(world["translator"], src, dest, state_dir=state, incremental=True, restart=True)
    assert redo["rows_written"] == 1050 and redo["rows_skipped"] == 0


def test_dry_run_writes_nothing(world, tmp_path):
    dest, state = f"faiss:{tmp_path / 'dest.faiss'}", tmp_path / "state"
    res = run_cli(_apply_args(world, dest, state, "--dry-run"), tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["dry_run"] and out["rows_to_write"] == N and out["sample_translated"] > 0 and out["written"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no destination, no state dir, nothing


def test_foreign_destination_and_foreign_checkpoint_are_refused(world, tmp_path):
    state = tmp_path / "state"
    foreign = write_store(f"faiss:{tmp_path / 'foreign.faiss'}", rows_of("B", 0, 50), model="e5", payloads=False)
    with pytest.raises(DestinationNotEmptyError):
        apply_migration(world["translator"], world["source"], foreign, state_dir=state)
    out = apply_migration(world["translator"], world["source"], foreign, state_dir=state, allow_existing=True)
    assert out["dest_count"] == N + 50

    dest = f"faiss:{tmp_path / 'dest.faiss'}"
    apply_migration(world["translator"], world["source"], dest, state_dir=state)
    other = fit_translator(tmp_path / "other_translator", seed=1)  # another translator, other fingerprint
    with pytest.raises(CheckpointError, match="--restart"):
        apply_migration(other, world["source"], dest, state_dir=state)
    redo = apply_migration(other, world["source"], dest, state_dir=state, restart=True)
    assert redo["rows_written"] == N and redo["dest_count"] == N
    assert_exact_copy(world["source"], dest, other)

    wrong_dim = write_store(f"faiss:{tmp_path / 'mpnet.faiss'}", rows_of("test", 0, 10), model="mpnet",
                            payloads=False)
    with pytest.raises(DimensionMismatchError):
        apply_migration(world["translator"], world["source"], wrong_dim, state_dir=state, allow_existing=True)
    assert read_all(wrong_dim)[0] == [int(r) for r in rows_of("test", 0, 10)]  # untouched
