"""The bounded-memory streaming path (issue 15, item 4) against brute-force references on seeded data:
IDMap FAISS files read from a mapping equal faiss's own reading, the payload sidecar read at the scan's
positions equals a lookup by id, and a Parquet writer that spills parts and finds old rows in on-disk key
files ends with exactly the rows a dict of every write says it should (also after a crash).
No memory is measured here: benchmarks/apply.py does that (docs/results.md)."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

faiss = pytest.importorskip("faiss")

from connectors import Batch, open_store  # noqa: E402
from connectors import faiss_writer, parquet_writer  # noqa: E402
from connectors.errors import UnreadableStoreError  # noqa: E402
from connectors.faiss_layout import read_id_mapped  # noqa: E402
from connectors.faiss_sidecars import PayloadSidecar, payload_path as side_path  # noqa: E402
from connectors.ids import to_int64  # noqa: E402
from connectors.parquet_keys import KEYS_DIR  # noqa: E402


def read_all(store, batch_size=777, **kw):
    ids, vecs, pays = [], [], []
    for b in store.iter_batches(batch_size, **kw):
        ids += b.ids
        vecs.append(b.vectors)
        pays += b.payloads if b.payloads is not None else [None] * len(b)
    return ids, np.concatenate(vecs), pays


def _idmap_indexes(x, ids):
    d = x.shape[1]
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, 16)
    ivf.train(x)
    out = {"idmap_flat_l2": faiss.IndexIDMap(faiss.IndexFlatL2(d)),
           "idmap2_flat_ip": faiss.IndexIDMap2(faiss.IndexFlatIP(d)),
           "idmap2_hnsw": faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)),
           "idmap_ivf": faiss.IndexIDMap(ivf)}
    for index in out.values():
        index.add_with_ids(x, ids)
    return out


def test_idmap_files_read_from_a_mapping_equal_faiss_own_reading(tmp_path, real_vectors):
    x = real_vectors(1500)
    ids = np.random.default_rng(3).choice(10**9, 1500, replace=False).astype(np.int64)  # in no order
    queries = real_vectors(20, start=5000)
    for name, index in _idmap_indexes(x, ids).items():
        path = tmp_path / f"{name}.index"
        faiss.write_index(index, str(path))
        assert read_id_mapped(path) is not None, f"{name}: the mapped reader was not used"
        ref = faiss.read_index(str(path))  # faiss's own reading: the reference
        s = open_store(f"faiss:{path}")
        got_ids, got_x, _ = read_all(s, 400)
        assert sorted(got_ids) == sorted(ids.tolist()), name
        order = {k: i for i, k in enumerate(ids.tolist())}
        assert got_x.tobytes() == x[[order[k] for k in got_ids]].tobytes(), name
        g = s.get(ids[[7, 1499, 0]].tolist() + [-5])
        assert g.ids == ids[[7, 1499, 0]].tolist() and g.vectors.tobytes() == x[[7, 1499, 0]].tobytes(), name
        if "hnsw" not in name and "ivf" not in name:  # exact indexes: the same hits, in the same order
            hit_ids, scores = s.search(queries, k=5)
            want_scores, want_ids = ref.search(queries, 5)
            assert hit_ids == want_ids.tolist() and np.allclose(scores, want_scores), name
        s.close()


def test_damaged_idmap_file_still_gets_the_clear_error(tmp_path, real_vectors):
    x = real_vectors(300)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(384))
    index.add_with_ids(x, np.arange(300, dtype=np.int64) * 7)
    faiss.write_index(index, str(tmp_path / "ok.index"))
    data = (tmp_path / "ok.index").read_bytes()
    (tmp_path / "cut.index").write_bytes(data[: len(data) // 2])
    assert read_id_mapped(tmp_path / "cut.index") is None  # falls back to faiss.read_index ...
    with pytest.raises(UnreadableStoreError, match="truncated, corrupt"):  # ... which reports the damage
        open_store(f"faiss:{tmp_path}/cut.index").count()


@pytest.mark.parametrize("id_type", ["int", "str"])
def test_sidecar_read_at_scan_positions_equals_lookup_by_id(tmp_path, real_vectors, payloads_for, monkeypatch,
                                                            id_type):
    monkeypatch.setattr(faiss_writer, "ROW_GROUP_ROWS", 300)  # many row groups: batches straddle them
    n = 2000
    x = real_vectors(n)
    rng = np.random.default_rng(11)
    ids = rng.permutation(10**6)[:n].tolist()
    if id_type == "str":
        ids = [f"doc-{i}" for i in ids]
    pays = payloads_for(n, seed=4)
    s_path = tmp_path / "s.index"
    uri = f"faiss:{s_path}"
    w = open_store(uri)
    w.create(384, "l2", id_type=id_type)
    for a in range(0, n, 450):
        w.upsert(Batch(ids[a:a + 450], x[a:a + 450], pays[a:a + 450]))
    w.close()
    side = pq.ParquetFile(tmp_path / "s.index.payload.parquet")
    assert side.metadata.num_rows == n and side.num_row_groups > 5
    # Brute force: each row's payload looked up by its FAISS key in a sidecar opened on its own.
    keys = np.array([to_int64(k) for k in ids] if id_type == "str" else ids, dtype=np.int64)
    by_id = [{k: v for k, v in p.items() if k != "_v2v_id"} for p in PayloadSidecar(side_path(s_path)).lookup(keys)]
    s = open_store(uri)
    got_ids, got_x, got_p = read_all(s, 777)
    assert got_ids == ids and got_x.tobytes() == x.tobytes()
    assert got_p == by_id == pays
    assert s._sidecar._sorted is None, "the scan built the whole-sidecar id lookup"
    cursor = next(b.cursor for i, b in enumerate(s.iter_batches(333)) if i == 2)  # resume mid-group
    rest_ids, _, rest_p = read_all(s, 500, cursor=cursor)
    assert rest_ids == ids[999:] and rest_p == pays[999:]
    g = s.get([ids[5], ids[1234]])  # a lookup by id builds the lookup and agrees
    assert g.payloads == [pays[5], pays[1234]] and s._sidecar._sorted is not None


def _check_dataset(root, uri, ref: dict, id_type: str) -> None:
    """The dataset holds exactly `ref` (id -> (vector, payload)); key files match the listed parts."""
    s = open_store(uri)
    ids, x, pays = read_all(s, 97) if ref else ([], np.zeros((0, 384), np.float32), [])
    assert len(ids) == len(set(ids)) == len(ref) == s.count()
    assert set(ids) == set(ref)
    for i, k in enumerate(ids):
        assert x[i].tobytes() == ref[k][0].tobytes() and pays[i] == ref[k][1]
    listed = set(s._meta["files"])
    assert {p.name for p in root.glob("part-*.parquet")} == listed  # nothing unlisted left behind
    keys_dir = root / KEYS_DIR
    on_disk = {p.name.removesuffix(".npy") for p in keys_dir.glob("*.npy")} if keys_dir.exists() else set()
    assert on_disk <= listed
    for name in on_disk:
        col = pq.read_table(root / name, columns=["id"]).column(0).to_pylist()
        keys = [to_int64(k) for k in col] if id_type == "str" else col
        assert np.load(keys_dir / f"{name}.npy").tolist() == sorted(keys), name


@pytest.mark.parametrize("id_type", ["int", "str"])
def test_parquet_writer_in_spilled_parts_equals_a_dict_of_every_write(tmp_path, real_vectors, monkeypatch, id_type):
    monkeypatch.setattr(parquet_writer, "ROW_GROUP_ROWS", 16)
    monkeypatch.setattr(parquet_writer, "SPILL_BYTES", 1)  # a part every 16 buffered rows
    x = real_vectors(3000)
    rng = np.random.default_rng(7 if id_type == "int" else 8)
    space = [int(i) for i in rng.permutation(10**6)[:400]]
    if id_type == "str":
        space = [f"k{i}" for i in space]
    root, uri = tmp_path / "p", f"parquet:{tmp_path}/p"
    s = open_store(uri)
    s.create(384, "ip", id_type=id_type)
    ref: dict = {}
    committed: dict = {}
    row = 0
    for step in range(60):
        op = rng.random()
        if op < 0.75:  # an upsert, ids may repeat within the batch and across parts not yet listed
            m = int(rng.integers(1, 60))
            ids = [space[j] for j in rng.integers(0, len(space), m)]
            vecs = x[row % 2900:row % 2900 + m]
            row += m
            pays = [{"step": step, "j": j} for j in range(m)]
            s.upsert(Batch(ids, vecs, pays))
            for k, v, p in zip(ids, vecs, pays):
                ref[k] = (v, p)
        elif op < 0.85:
            gone = [space[j] for j in rng.integers(0, len(space), 25)]
            s.delete(gone)
            for k in gone:
                ref.pop(k, None)
        else:
            s.flush()
            committed = dict(ref)
            _check_dataset(root, uri, ref, id_type)
    s.close()
    _check_dataset(root, uri, ref, id_type)

    # A crash after parts were spilled but before the commit: the dataset is the last flush's.
    committed = dict(ref)
    s = open_store(uri)
    s.create(384, "ip", id_type=id_type)
    s.upsert(Batch(space[:200], x[:200], [{"lost": 1}] * 200))
    assert len(list(root.glob("part-*.parquet"))) > len(s._writer.meta["files"])  # spilled, unlisted
    del s  # no flush, no close: as after kill -9
    fresh = open_store(uri)
    fresh.create(384, "ip", id_type=id_type)  # the next writer sweeps the spilled parts and their key files
    fresh.close()
    _check_dataset(root, uri, committed, id_type)

    # Key files lost or torn: rebuilt from the parts, and replacing rows still never duplicates them.
    for p in list((root / KEYS_DIR).glob("*.npy"))[::2]:
        p.write_bytes(b"torn")
    s = open_store(uri)
    s.create(384, "ip", id_type=id_type)
    s.upsert(Batch(space[:50], x[2000:2050], [{"again": 1}] * 50))
    s.close()
    for j, k in enumerate(space[:50]):
        committed[k] = (x[2000 + j], {"again": 1})
    _check_dataset(root, uri, committed, id_type)
