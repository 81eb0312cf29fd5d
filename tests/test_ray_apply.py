"""`apply --engine ray`: same destination and the same exactly-once guarantees as the local engine.

Real engines (FAISS file source, Parquet / Milvus Lite / Qdrant local destinations and sources), a real
translator (supervised Procrustes fitted on real minilm -> e5 pairs from the shared data), a local Ray
instance with 2 CPUs started once for the module (run_ray_apply reuses a running Ray).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import shared_data

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 3000

needs_data = pytest.mark.skipif(shared_data.data_root() is None, reason="shared reference data not found")


def _rows_of(uri: str) -> dict:
    """{id: (vector, payload)} of a whole store, failing on a duplicated id."""
    from connectors import open_store

    out = {}
    with open_store(uri) as store:
        for b in store.iter_batches(1024):
            for j, x in enumerate(b.ids):
                assert x not in out, f"id {x!r} read twice from {uri}"
                out[x] = (b.vectors[j], b.payloads[j] if b.payloads is not None else None)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("ray_apply")


@pytest.fixture(scope="module")
def translator_dir(work):
    """A real minilm -> e5 linear map whose weights this test computed itself (least squares in numpy), so the
    expected destination vectors are unit(x @ W) by hand, independent of the translator code and both engines."""
    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found")
    from translators.model import linear_translator

    rows = shared_data.split()["A"][:2000]
    x, y = shared_data.embeddings("minilm", rows), shared_data.embeddings("e5", rows)
    w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1], dtype=np.float32), x.T @ y).astype(np.float32)
    path = work / "translator"
    no_mean = np.zeros(w.shape[0], np.float32)  # 384 -> 384: no centring on either side
    linear_translator(w, no_mean, no_mean, {"method": "lstsq-test", "output_norm": 1.0}).save(path)
    np.save(work / "reference_w.npy", w)
    return str(path)


def _expected(source_vectors, translator_dir) -> np.ndarray:
    """unit(x @ W) with the W the fixture computed: the destination's vectors by hand."""
    w = np.load(Path(translator_dir).parent / "reference_w.npy").astype(np.float64)
    z = np.asarray(source_vectors, np.float64) @ w
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def source_vectors():
    if shared_data.data_root() is None:
        pytest.skip("shared reference data not found")
    return shared_data.embeddings("minilm", shared_data.split()["test"][:N_ROWS])


def _payloads(ids):
    return [{"row": int(i), "title": f"package {i}", "score": i / 7.0, "flag": bool(i % 2)} for i in ids]


def _fill(uri: str, vectors: np.ndarray, start: int = 0) -> str:
    from connectors import open_store
    from connectors.base import Batch

    ids = list(range(start, start + len(vectors)))
    with open_store(uri) as store:
        store.create(vectors.shape[1], "cosine", id_type="int")
        for s in range(0, len(ids), 1000):
            store.upsert(Batch(ids[s:s + 1000], vectors[s:s + 1000], _payloads(ids[s:s + 1000])))
        store.flush()
    return uri


@pytest.fixture(scope="module")
def faiss_source(work, source_vectors):
    return _fill(f"faiss:{work}/source.index", source_vectors)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import logging

    # Ray waits a hard-coded 30 s for its raylet; on a loaded 2-core machine that can run out once.
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            break
        except Exception:  # ray raises a bare Exception for this timeout
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


def _ray_apply(translator_dir, source, dest, state, **kw):
    from v2v_migrate.ray_apply import run_ray_apply

    args = dict(translator_dir=translator_dir, source_uri=source, dest_uri=dest, state_dir=str(state),
                batch_size=250, workers=2, address=None, device="cpu", restart=False, source_options=None,
                dest_options=None)
    args.update(kw)
    return run_ray_apply(**args)


def _assert_translated_copy(dest_rows: dict, source_vectors, translator_dir, atol=1e-5):
    expected = _expected(source_vectors, translator_dir)
    assert sorted(dest_rows) == list(range(len(source_vectors)))
    got = np.stack([dest_rows[i][0] for i in range(len(source_vectors))])
    np.testing.assert_allclose(got, expected, atol=atol)
    assert [dest_rows[i][1] for i in range(len(source_vectors))] == _payloads(range(len(source_vectors)))


# -- the Ray engine against the local engine -----------------------------------------------------------
@pytest.mark.ray
@needs_data
def test_ray_writes_the_same_destination_as_the_local_engine(local_ray, work, translator_dir, faiss_source,
                                                             source_vectors):
    from v2v_migrate.apply import apply_migration

    local = apply_migration(translator_dir, faiss_source, f"parquet:{work}/dest_local", batch_size=250,
                            device="cpu", state_dir=work / "state_local")
    summary = _ray_apply(translator_dir, faiss_source, f"parquet:{work}/dest_ray", work / "state_ray")
    assert summary["rows_written"] == local["rows_written"] == N_ROWS
    assert summary["completed"] and summary["dest_count"] == N_ROWS
    assert summary["read_by"] == "workers" and summary["shards"] > 1
    assert set(local) <= set(summary), f"missing summary keys: {set(local) - set(summary)}"
    ray_rows, local_rows = _rows_of(f"parquet:{work}/dest_ray"), _rows_of(f"parquet:{work}/dest_local")
    assert sorted(ray_rows) == sorted(local_rows)
    for i, (vec, payload) in local_rows.items():
        np.testing.assert_allclose(ray_rows[i][0], vec, atol=1e-6)
        assert ray_rows[i][1] == payload
    _assert_translated_copy(ray_rows, source_vectors, translator_dir)

    again = _ray_apply(translator_dir, faiss_source, f"parquet:{work}/dest_ray", work / "state_ray")
    assert again["already_complete"] and again["rows_written"] == 0


@pytest.mark.ray
@needs_data
def test_embedded_source_is_read_by_the_driver(local_ray, work, translator_dir, source_vectors):
    # A Qdrant local folder is locked by the process that opens it: actors must not open it.
    source = _fill(f"qdrant:{work}/qdrant_src#docs", source_vectors[:1000])
    summary = _ray_apply(translator_dir, source, f"faiss:{work}/from_qdrant.index", work / "state_q", workers=1)
    assert summary["read_by"] == "driver" and summary["rows_written"] == 1000
    _assert_translated_copy(_rows_of(f"faiss:{work}/from_qdrant.index"), source_vectors[:1000], translator_dir)


# -- exactly once after kill -9 ------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap(pids: list[int], wait_s: float = 3.0) -> list[int]:
    """Wait for the killed driver's Ray processes to exit; kill (by pid) those still there after wait_s."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.3)
    left = [p for p in pids if _alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _paused_ray_cli(translator_dir, source, dest, state, gate, pause_after: int) -> subprocess.Popen:
    """`apply --engine ray` by the real CLI, its destination pausing before upsert pause_after + 1
    (tests/_paused_apply.py): the test waits for the pause the run reports, never for time."""
    args = ["apply", "--engine", "ray", "--workers", "2", "--device", "cpu", "--translator", str(translator_dir),
            "--source", source, "--dest", dest, "--state-dir", str(state), "--batch-size", "100", "--json"]
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "_paused_apply.py"), str(gate),
                             f"upsert:{pause_after}", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])))


def _wait_paused(gate: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not (gate / "paused").exists():
        assert proc.poll() is None, f"apply ended before its pause: {proc.stderr.read().decode()[-2000:]}"
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"apply did not reach its pause within {timeout}s")
        time.sleep(0.02)


# Paused before its 11th upsert of 100 rows: a shard's chunk is at most 375 rows here, so at least two
# chunks were written, and the first one committed (the first commit follows the first chunk).
PAUSE_AFTER = 10


@pytest.mark.ray
@needs_data
@pytest.mark.parametrize("dest_kind", ["faiss", pytest.param("milvus", marks=pytest.mark.slow)])
def test_kill_9_of_the_driver_mid_run_then_resume_gives_exactly_n_rows(local_ray, work, translator_dir,
                                                                        faiss_source, source_vectors, dest_kind):
    from v2v_migrate.checkpoint import load_checkpoint, state_dir_for

    dest = {"faiss": f"faiss:{work}/killed.index", "milvus": f"milvus:{work}/killed.db#docs"}[dest_kind]
    state, gate = work / f"state_kill_{dest_kind}", work / f"gate_kill_{dest_kind}"
    proc = _paused_ray_cli(translator_dir, faiss_source, dest, state, gate, PAUSE_AFTER)
    try:
        _wait_paused(gate, proc)
        ray_procs = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    _reap(ray_procs)

    cp = load_checkpoint(state_dir_for(dest, state))
    assert not cp.completed and 0 < cp.rows_written <= PAUSE_AFTER * 100
    # Resumed with another worker count: the shard plan comes from the checkpoint, not from --workers.
    summary = _ray_apply(translator_dir, faiss_source, dest, state, batch_size=100, workers=1)
    assert summary["resumed"] and summary["completed"]
    assert summary["resumed_after_rows"] == cp.rows_written
    assert summary["rows_written"] == N_ROWS - cp.rows_written
    assert summary["dest_count"] == N_ROWS
    _assert_translated_copy(_rows_of(dest), source_vectors, translator_dir)


@pytest.mark.ray
@pytest.mark.slow
@needs_data
def test_ctrl_c_commits_what_is_written_then_resume_finishes(local_ray, work, translator_dir, faiss_source,
                                                             source_vectors):
    from v2v_migrate.checkpoint import load_checkpoint, state_dir_for

    dest, state, gate = f"parquet:{work}/interrupted", work / "state_sigint", work / "gate_sigint"
    proc = _paused_ray_cli(translator_dir, faiss_source, dest, state, gate, PAUSE_AFTER)
    _wait_paused(gate, proc)
    ray_procs = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    (gate / "go").touch()  # the paused upsert goes on; the run then stops at its Ctrl-C
    out, err = proc.communicate(timeout=120)
    _reap(ray_procs)
    assert proc.returncode == 130, err.decode()[-2000:]
    text = out.decode()
    summary = json.loads(text[text.index("{\n"):])  # the CLI's --json summary (after anything Ray printed)
    assert summary["interrupted"] and not summary["completed"]
    cp = load_checkpoint(state_dir_for(dest, state))
    assert cp.rows_written == summary["rows_written"] and 0 < cp.rows_written < N_ROWS
    assert len(_rows_of(dest)) == cp.rows_written  # what the checkpoint claims is exactly what is there
    again = _ray_apply(translator_dir, faiss_source, dest, state, batch_size=100)
    assert again["resumed"] and again["dest_count"] == N_ROWS
    _assert_translated_copy(_rows_of(dest), source_vectors, translator_dir)


# -- refusals and the CPU/GPU translation path (no Ray needed) ------------------------------------------
@needs_data
@pytest.mark.parametrize("bad", [{"workers": 0}, {"batch_size": 0}])
def test_bad_worker_or_batch_counts_are_refused_with_the_fix(work, translator_dir, faiss_source, bad):
    from v2v_migrate.errors import UsageError

    with pytest.raises(UsageError, match="Fix: pass"):
        _ray_apply(translator_dir, faiss_source, f"faiss:{work}/never.index", work / "state_never", **bad)
    assert not (work / "never.index").exists()


@needs_data
def test_a_checkpoint_of_another_translator_is_refused(work, translator_dir, faiss_source):
    from translators import fit
    from v2v_migrate.checkpoint import Checkpoint, normalize_uri, save_checkpoint, state_dir_for
    from v2v_migrate.errors import CheckpointError

    dest, state = f"faiss:{work}/dest_other.index", work / "state_other"
    save_checkpoint(state_dir_for(dest, state), Checkpoint(normalize_uri(faiss_source), normalize_uri(dest),
                                                            "0" * 64, cursor={"ray_shards": []}, rows_read=5))
    with pytest.raises(CheckpointError, match="--restart"):
        _ray_apply(translator_dir, faiss_source, dest, state)


def test_a_local_engine_checkpoint_resumes_as_one_shard():
    from v2v_migrate.ray_apply import shards_from_checkpoint

    [one] = shards_from_checkpoint([0, 500], rows_written=500)
    assert (one.shard, one.cursor, one.rows, one.done) == (None, [0, 500], 500, False)
    assert shards_from_checkpoint(None, 0) is None
    ray_cursor = {"ray_shards": [{"shard": [0, 10], "cursor": None, "rows": 0, "done": True}]}
    assert shards_from_checkpoint(ray_cursor, 10)[0].done


@needs_data
def test_cpu_path_of_translate_batch_is_the_translator_itself(translator_dir, source_vectors):
    from translators import load_translator
    from v2v_migrate.ray_worker import translate_batch

    t = load_translator(translator_dir)
    np.testing.assert_array_equal(translate_batch(t, source_vectors[:500]), t(source_vectors[:500]))


@pytest.mark.gpu
@needs_data
def test_gpu_translation_matches_cpu_within_float_tolerance(translator_dir, source_vectors):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from translators import load_translator
    from v2v_migrate.ray_worker import translate_batch

    cpu = load_translator(translator_dir)(source_vectors)
    gpu = translate_batch(load_translator(translator_dir).to("cuda"), source_vectors)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


@pytest.mark.ray
@needs_data
def test_cli_engine_ray_runs_and_the_local_engine_refuses_its_unfinished_checkpoint(
        local_ray, work, translator_dir, faiss_source, capsys):
    from v2v_migrate.apply import apply_migration
    from connectors import open_store
    from v2v_migrate.checkpoint import load_checkpoint, state_dir_for
    from v2v_migrate.cli import main
    from v2v_migrate.dest_state import save_progress
    from v2v_migrate.errors import CheckpointError

    dest, state = f"parquet:{work}/dest_cli_ray", work / "state_cli_ray"
    code = main(["apply", "--engine", "ray", "--workers", "2", "--translator", translator_dir,
                 "--source", faiss_source, "--dest", dest, "--state-dir", str(state), "--batch-size", "500",
                 "--device", "cpu", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "ray" and summary["dest_count"] == N_ROWS

    # Pretend the Ray run stopped half-way: the local engine must not resume a sharded cursor.
    cp_dir = state_dir_for(dest, state)
    cp = load_checkpoint(cp_dir)
    assert "ray_shards" in cp.cursor
    cp.completed = False
    with open_store(dest) as d:
        save_progress(d, cp_dir, cp)  # both copies: the one kept with the destination is the authority
    with pytest.raises(CheckpointError, match="--engine ray"):
        apply_migration(translator_dir, faiss_source, dest, batch_size=500, device="cpu", state_dir=state)


# -- selections, other vectors and rate limits through the Ray engine ---------------------------------
@pytest.mark.ray
@needs_data
def test_ray_copies_other_vectors_and_keeps_the_filter(local_ray, work, translator_dir, source_vectors):
    import qdrant_edge as q

    from v2v_migrate.selection import Selection

    second = shared_data.embeddings("l3", shared_data.split()["test"][:600])
    shard = q.EdgeShard.create(f"{work}/edge_multi/docs", q.EdgeConfig(vectors={
        "minilm": q.EdgeVectorParams(size=384, distance=q.Distance.Cosine),
        "l3": q.EdgeVectorParams(size=384, distance=q.Distance.Dot)}))
    shard.update(q.UpdateOperation.upsert_points([
        q.Point(i, {"minilm": source_vectors[i].tolist(), "l3": second[i].tolist()}, _payloads([i])[0])
        for i in range(600)]))
    shard.flush()
    shard.close()
    flt = '{"must": [{"key": "flag", "match": {"value": true}}]}'
    summary = _ray_apply(translator_dir, f"qdrant-edge:{work}/edge_multi#docs", f"qdrant-edge:{work}/edge_out#docs",
                         work / "state_multi", source_options={"vector_name": "minilm"},
                         selection=Selection(filter=flt), max_rate=5000)
    assert summary["read_by"] == "driver" and summary["max_rate"] == 5000 and summary["selection"] == {"filter": flt}
    out = q.EdgeShard.load(f"{work}/edge_out/docs")
    records, _ = out.scroll(q.ScrollRequest(limit=1000, with_vector=True, with_payload=True))
    out.close()
    assert sorted(r.id for r in records) == [i for i in range(600) if i % 2]
    for r in records:
        assert np.array_equal(np.asarray(r.vector["l3"], np.float32), second[r.id]) and r.payload == _payloads([r.id])[0]


@pytest.mark.ray
@needs_data
def test_ray_workers_read_a_milvus_server_through_the_filter(local_ray, work, translator_dir, source_vectors,
                                                             milvus_server):
    from v2v_migrate.selection import Selection

    source = _fill(milvus_server.uri("ray_source"), source_vectors[:1000])
    summary = _ray_apply(translator_dir, source, f"parquet:{work}/from_server", work / "state_server",
                         selection=Selection(filter="row < 400"), max_rate=10_000)
    assert summary["read_by"] == "workers" and summary["rows_written"] == 400
    _assert_translated_copy(_rows_of(f"parquet:{work}/from_server"), source_vectors[:400], translator_dir)
