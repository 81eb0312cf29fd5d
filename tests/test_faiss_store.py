"""FaissStore on real minilm vectors: exact round trips, every readable layout, lossy refusal, errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import Batch, open_store
from connectors.errors import (
    DimensionMismatchError, EmptyStoreError, IdTypeError, InvalidVectorsError, LossyIndexError,
    MetricMismatchError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)

N = 5000


def read_all(store, batch_size=777, **kw):
    ids, vecs, pays = [], [], []
    for b in store.iter_batches(batch_size, **kw):
        ids += b.ids
        vecs.append(b.vectors)
        pays += b.payloads if b.payloads is not None else [None] * len(b)
    return ids, (np.concatenate(vecs) if vecs else np.zeros((0, store.dim), np.float32)), pays


def write(uri, ids, x, payloads=None, metric="ip", id_type="int", batch=1000, **kw):
    s = open_store(uri, **kw)
    s.create(x.shape[1], metric, id_type=id_type)
    for a in range(0, len(ids), batch):
        s.upsert(Batch(ids[a:a + batch], x[a:a + batch], payloads[a:a + batch] if payloads else None))
    s.close()
    return s


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_int_ids_payloads_bit_exact_and_idempotent(tmp_path, real_vectors, payloads_for):
    x = real_vectors(N)
    ids = [int(i) * 7 + 3 for i in range(N)]
    pays = payloads_for(N)
    uri = f"faiss:{tmp_path}/rt.index"
    write(uri, ids, x, pays)
    s = open_store(uri)
    s.create(384, "ip")  # reopen for writing, then upsert everything a second time
    for a in range(0, N, 1000):
        s.upsert(Batch(ids[a:a + 1000], x[a:a + 1000], pays[a:a + 1000]))
    s.flush()
    r = open_store(uri)
    assert (r.count(), r.dim, r.metric, r.id_type) == (N, 384, "ip", "int")
    assert set(r.payload_fields()) == set(pays[0])
    got_ids, got_x, got_p = read_all(r)
    assert got_ids == ids
    assert got_x.dtype == np.float32 and got_x.tobytes() == x.tobytes()
    assert got_p == pays
    assert not list(tmp_path.glob("*.tmp"))


def test_string_ids_are_mapped_and_restored(tmp_path, real_vectors):
    x = real_vectors(600)
    ids = [f"pkg/{i}-é" for i in range(300)] + list(range(300))  # str and int originals in one store
    uri = f"faiss:{tmp_path}/s.index"
    write(uri, ids, x, id_type="str", batch=128)
    native = faiss.read_index(str(tmp_path / "s.index"))
    assert native.ntotal == 600 and faiss.vector_to_array(native.id_map).min() >= 0  # int64 keys in FAISS
    r = open_store(uri)
    assert r.id_type == "str"
    got_ids, got_x, got_p = read_all(r, 100)
    assert got_ids == ids and got_x.tobytes() == x.tobytes()
    assert got_p == [None] * 600  # no user payload fields: the mapping key is hidden
    g = r.get(["pkg/5-é", 7, "absent"])
    assert g.ids == ["pkg/5-é", 7] and np.array_equal(g.vectors, x[[5, 307]])


def test_upsert_replaces_changed_rows_and_ignores_identical(tmp_path, real_vectors):
    x = real_vectors(2000)
    uri = f"faiss:{tmp_path}/u.index"
    write(uri, list(range(2000)), x, [{"v": 1}] * 2000, metric="l2")
    s = open_store(uri)
    s.create(384, "l2", exist_ok=True)
    new = x[:100][::-1].copy()
    s.upsert(Batch(list(range(100)), new, [{"v": 2}] * 100))
    s.upsert(Batch(list(range(100, 200)), x[100:200], [{"v": 1}] * 100))  # identical: no-op
    s.upsert(Batch([5, 5], x[[1, 2]], [{"v": 3}, {"v": 4}]))  # same id twice in a batch: last wins
    s.close()
    r = open_store(uri)
    assert r.count() == 2000
    g = r.get([0, 5, 99, 150])
    assert np.array_equal(g.vectors, np.stack([new[0], x[2], new[99], x[150]]))
    assert [p["v"] for p in g.payloads] == [2, 4, 2, 1]


def _plain_indexes(x, ids):
    d = x.shape[1]
    flat_l2 = faiss.IndexFlatL2(d)
    flat_ip = faiss.IndexFlatIP(d)
    hnsw = faiss.IndexHNSWFlat(d, 16)
    idmap = faiss.IndexIDMap(faiss.IndexFlatIP(d))
    idmap2 = faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, 32)
    ivf.train(x)
    for index in (flat_l2, flat_ip, hnsw):
        index.add(x)
    for index in (idmap, idmap2, ivf):
        index.add_with_ids(x, ids)
    return {"flat_l2": (flat_l2, "l2", False), "flat_ip": (flat_ip, "ip", False), "hnsw": (hnsw, "l2", False),
            "idmap": (idmap, "ip", True), "idmap2_hnsw": (idmap2, "ip", True), "ivfflat": (ivf, "l2", True)}


def test_plain_faiss_layouts_read_exactly_with_their_ids(tmp_path, real_vectors):
    x = real_vectors(3000)
    ids = np.arange(3000, dtype=np.int64) * 11 + 100_000
    for name, (index, metric, has_ids) in _plain_indexes(x, ids).items():
        path = tmp_path / f"{name}.index"
        faiss.write_index(index, str(path))
        before = digest(path)
        s = open_store(f"faiss:{path}")
        assert (s.count(), s.dim, s.metric, s.id_type) == (3000, 384, metric, "int"), name
        got_ids, got_x, got_p = read_all(s, 500)
        expect_ids = ids if has_ids else np.arange(3000)
        order = np.argsort(got_ids)
        assert np.array_equal(np.array(got_ids)[order], expect_ids), name
        assert got_x[order].tobytes() == x.tobytes(), name
        assert got_p == [None] * 3000
        s.close()
        assert digest(path) == before, f"{name}: reading modified the source"


def test_ivf_one_pass_read_equals_reconstruct_reference(tmp_path, real_vectors):
    x = real_vectors(N)
    rng = np.random.default_rng(7)
    ids = rng.choice(10**12, N, replace=False).astype(np.int64)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(384), 384, 64, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add_with_ids(x, ids)
    faiss.write_index(ivf, str(tmp_path / "ivf.index"))
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # the slow per-id reference
    s = open_store(f"faiss:{tmp_path}/ivf.index")
    got_ids, got_x, _ = read_all(s, 333)
    assert sorted(got_ids) == sorted(ids.tolist())
    reference = np.stack([ivf.reconstruct(int(i)) for i in got_ids])
    assert got_x.tobytes() == reference.tobytes()
    # stream order = inverted list order (one sequential pass over the lists)
    invlists = ivf.invlists
    list_order = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(l), invlists.list_size(l))
                                 for l in range(ivf.nlist) if invlists.list_size(l)])
    assert np.array_equal(np.array(got_ids), list_order)
    shards = s.shards(4)
    assert 2 <= len(shards) <= 4 and all("lists" in sh for sh in shards)
    parts = [read_all(s, 250, shard=sh)[0] for sh in shards]
    assert sum(parts, []) == got_ids  # disjoint, complete, in order


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_resume_from_cursor_gives_exactly_the_remaining_rows(tmp_path, real_vectors, kind):
    x = real_vectors(2500)
    path = tmp_path / f"{kind}.index"
    if kind == "flat":
        write(f"faiss:{path}", list(range(2500)), x, metric="l2")
    else:
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(384), 384, 16)
        ivf.train(x)
        ivf.add(x)
        faiss.write_index(ivf, str(path))
    uri = f"faiss:{path}"
    full_ids, full_x, _ = read_all(open_store(uri), 300)
    batches = open_store(uri).iter_batches(300)
    for _ in range(3):
        cursor = next(batches).cursor
    cursor = json.loads(json.dumps(cursor))  # checkpoints store cursors as JSON
    ids, rest, _ = read_all(open_store(uri), 300, cursor=cursor)
    assert ids == full_ids[900:] and rest.tobytes() == full_x[900:].tobytes()
    shard = open_store(uri).shards(3)[1]
    it = open_store(uri).iter_batches(100, shard=shard)
    first = next(it)
    tail, _, _ = read_all(open_store(uri), 100, shard=shard, cursor=first.cursor)
    assert first.ids + tail == full_ids[shard["start"]:shard["stop"]]
    with pytest.raises(StoreUsageError):
        next(open_store(uri).iter_batches(100, shard=shard, cursor={"pos": 10**9}))


LOSSY = {"PQ16x4": "PQ codes", "IVF16,PQ16x4": "PQ codes", "SQ8": "scalar-quantized", "LSH": "binary hashes",
         "PCA64,IVF8,Flat": "PCAMatrix"}


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    # CI has 2 cores shared with other jobs: OpenMP spin-waiting makes training 10-100x slower there.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("factory", sorted(LOSSY))
def test_lossy_index_refused_unless_allowed(tmp_path, real_vectors, factory):
    x = real_vectors(2000)
    index = faiss.index_factory(384, factory)
    for part in (index, faiss.try_extract_index_ivf(index)):
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False  # its annealing is slow and irrelevant here
    index.train(x)
    index.add(x)
    path = tmp_path / "lossy.index"
    faiss.write_index(index, str(path))
    with pytest.raises(LossyIndexError) as e:
        open_store(f"faiss:{path}").count()
    assert LOSSY[factory] in str(e.value) and "cannot be recovered" in str(e.value)
    assert "allow_lossy=True" in e.value.fix
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()  # lets faiss's own reconstruct_n serve as the reference
    reference = index.reconstruct_n(0, 2000)
    for s in (open_store(f"faiss:{path}", allow_lossy=True), open_store(f"faiss:{path}?allow_lossy=1")):
        got_ids, got_x, _ = read_all(s, 700)
        approx = got_x[np.argsort(got_ids)]
        assert sorted(got_ids) == list(range(2000))
        assert np.allclose(approx, reference, atol=1e-5)
        if factory != "LSH":  # LSH keeps sign bits only; the others approximate the vectors
            cos = (approx * x).sum(1) / np.linalg.norm(approx, axis=1) / np.linalg.norm(x, axis=1)
            assert cos.mean() > 0.5


def test_unreadable_missing_and_empty_files(tmp_path, real_vectors):
    x = real_vectors(500)
    good = tmp_path / "good.index"
    write(f"faiss:{good}", list(range(500)), x, metric="l2")
    data = good.read_bytes()
    (tmp_path / "trunc.index").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.index").write_bytes(b"not a faiss index" * 100)
    (tmp_path / "zero.index").write_bytes(b"")
    for name in ("trunc", "garbage", "zero"):
        with pytest.raises(UnreadableStoreError) as e:
            open_store(f"faiss:{tmp_path}/{name}.index").count()
        assert e.value.fix
    with pytest.raises(StoreNotFoundError):
        open_store(f"faiss:{tmp_path}/missing.index").count()
    (tmp_path / "good.index.meta.json").write_text("{not json")
    with pytest.raises(UnreadableStoreError, match="meta.json"):
        open_store(f"faiss:{good}").count()
    (tmp_path / "good.index.meta.json").unlink()
    (tmp_path / "good.index.payload.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(UnreadableStoreError, match="payload.parquet"):
        open_store(f"faiss:{good}").count()
    assert not open_store(f"faiss:{tmp_path}/missing.index").exists()
    empty = open_store(f"faiss:{tmp_path}/empty.index")
    empty.create(384, "cosine")
    assert open_store(f"faiss:{tmp_path}/empty.index").count() == 0
    assert read_all(open_store(f"faiss:{tmp_path}/empty.index"))[0] == []
    with pytest.raises(EmptyStoreError):
        open_store(f"faiss:{tmp_path}/empty.index").sample(10)


def test_bad_writes_raise_typed_errors(tmp_path, real_vectors):
    x = real_vectors(10)
    s = open_store(f"faiss:{tmp_path}/w.index")
    s.create(384, "ip")
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(InvalidVectorsError):
        s.upsert(Batch(list(range(10)), bad))
    with pytest.raises(DimensionMismatchError):
        s.upsert(Batch(list(range(10)), x[:, :100]))
    with pytest.raises(IdTypeError):
        s.upsert(Batch(["a"] * 10, x))
    with pytest.raises(IdTypeError):
        s.upsert(Batch([2**63 + i for i in range(10)], x))
    s.upsert(Batch(list(range(10)), x))
    s.close()
    with pytest.raises(DimensionMismatchError):
        open_store(f"faiss:{tmp_path}/w.index").create(768, "ip")
    with pytest.raises(MetricMismatchError):
        open_store(f"faiss:{tmp_path}/w.index").create(384, "l2")
    assert open_store(f"faiss:{tmp_path}/w.index").count() == 10  # failed writes left nothing behind


def test_sample_is_seeded_uniform_and_matches_rows(tmp_path, real_vectors):
    x = real_vectors(N)
    uri = f"faiss:{tmp_path}/smp.index"
    write(uri, list(range(N)), x, [{"row": i} for i in range(N)])
    s = open_store(uri)
    a, b, c = s.sample(1000, seed=1), s.sample(1000, seed=1), s.sample(1000, seed=2)
    assert a.ids == b.ids and a.ids != c.ids and len(set(a.ids)) == 1000
    assert s.sample(100, seed=1).ids == a.ids[:100]
    assert np.array_equal(a.vectors, x[a.ids]) and [p["row"] for p in a.payloads] == a.ids
    counts = np.bincount(np.array(a.ids) // 1000, minlength=5)  # 200 expected per fifth of the store
    assert counts.min() > 150 and counts.max() < 250


def test_hnsw_and_cosine_writers(tmp_path, real_vectors):
    x = real_vectors(1500)
    uri = f"faiss:{tmp_path}/h.index"
    write(uri, list(range(1500)), x, metric="ip", index="hnsw", hnsw_m=16, batch=500)
    s = open_store(uri)
    s.create(384, "ip")
    s.upsert(Batch([0, 1], x[[10, 11]]))  # replacement: the graph is rebuilt at flush
    s.upsert(Batch([5000], x[[12]]))
    s.close()
    native = faiss.read_index(str(tmp_path / "h.index"))
    assert isinstance(faiss.downcast_index(native.index), faiss.IndexHNSWFlat) and native.ntotal == 1501
    _, found = native.search(x[20:40], 1)
    assert (found[:, 0] == np.arange(20, 40)).mean() > 0.9
    r = open_store(uri)
    g = r.get([0, 1, 2, 5000])
    assert np.array_equal(g.vectors, x[[10, 11, 2, 12]])
    r.create(384, "ip")
    r.upsert(Batch([6000, 6001], -x[[13, 14]]))  # new ids only: the graph is extended, not rebuilt
    r.close()
    native = faiss.read_index(str(tmp_path / "h.index"))
    assert native.ntotal == 1503 and native.search(-x[[14]], 1)[1][0, 0] == 6001
    cos_uri = f"faiss:{tmp_path}/c.index"
    write(cos_uri, list(range(100)), x[:100] * 3.0, metric="cosine")
    c = open_store(cos_uri)
    assert c.metric == "cosine"
    _, got, _ = read_all(c)
    assert np.allclose(got, x[:100] / np.linalg.norm(x[:100], axis=1, keepdims=True), atol=1e-6)


def test_foreign_payload_sidecar_joined_by_id(tmp_path, real_vectors, payloads_for):
    x = real_vectors(1000)
    ids = np.arange(1000, dtype=np.int64) * 3
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(384))
    index.add_with_ids(x, ids)
    faiss.write_index(index, str(tmp_path / "f.index"))
    pays = payloads_for(1000)
    perm = np.random.default_rng(0).permutation(900)  # other order, and 100 ids without payload
    table = pa.Table.from_pylist([{"id": int(ids[i]), "title": pays[i]["text"], "rank": i} for i in perm])
    pq.write_table(table, str(tmp_path / "f.index.payload.parquet"), row_group_size=128)
    s = open_store(f"faiss:{tmp_path}/f.index")
    got_ids, _, got_p = read_all(s, 256)
    assert got_ids == ids.tolist()
    assert got_p[:900] == [{"title": pays[i]["text"], "rank": i} for i in range(900)]
    assert got_p[900:] == [{}] * 100


def test_payload_types_that_change_between_batches(tmp_path, real_vectors):
    x = real_vectors(50)
    batches = [
        [{"a": 1, "b": None} for _ in range(10)],            # a: int, b: all null
        [{"a": 1.5, "b": "s", "c": [1]} for _ in range(10)],  # a: float now, b: str, c: new field
        [{"a": 2, "d": {"x": 1} if i % 2 else {"y": "s"}} for i in range(10)],  # dicts of other shapes
        [{"a": "x", "b": "t"} for _ in range(10)],            # a: str
        [{} for _ in range(10)],                              # no payload at all
    ]
    for i, p in enumerate(batches[0]):  # nested values of different shapes: must not gain keys or change types
        p["d"] = {"x": i} if i % 2 else {"y": "s", "l": [1, "a", None, {"z": 2.0}]}
    uri = f"faiss:{tmp_path}/p.index"
    s = open_store(uri)
    s.create(384, "l2")
    for k, pays in enumerate(batches):
        s.upsert(Batch(list(range(10 * k, 10 * k + 10)), x[10 * k:10 * k + 10], pays))
        if k == 1:
            s.flush()  # a flush between batches: the next ones append to the compacted table
    s.close()
    _, _, got = read_all(open_store(uri))
    want = [{"a": p.get("a"), "b": p.get("b"), "d": p.get("d"), "c": p.get("c")} for pays in batches for p in pays]
    assert got == want
    assert [type(p["a"]) for p in got[::10]] == [int, float, int, str, type(None)]


@pytest.mark.skipif(not hasattr(faiss, "IO_FLAG_MMAP_IFC"), reason="faiss without IO_FLAG_MMAP_IFC")
def test_large_index_is_memory_mapped_not_loaded(tmp_path, real_vectors):
    x = real_vectors(40_000)  # 61 MiB of float32 in the file
    index = faiss.IndexFlatIP(384)
    index.add(x)
    faiss.write_index(index, str(tmp_path / "big.index"))
    del index
    s = open_store(f"faiss:{tmp_path}/big.index")
    first = next(s.iter_batches(1000))
    assert s.count() == 40_000 and first.vectors.tobytes() == x[:1000].tobytes()
    # The file itself is mapped into this process (the kernel's own list of mappings), so its pages are
    # file-backed and droppable, not a heap copy. Memory figures belong to benchmarks/apply.py.
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc/self/maps on this OS to tell a mapped file from a loaded one")
    assert str((tmp_path / "big.index").resolve()) in maps.read_text(), "the index was loaded, not mapped"
