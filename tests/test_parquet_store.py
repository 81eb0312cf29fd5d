"""ParquetStore on real minilm vectors: exact round trips, plain datasets, streaming, idempotent writes, errors."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import Batch, open_store
from connectors.errors import (
    DimensionMismatchError, EmptyStoreError, IdTypeError, InvalidVectorsError, MetricMismatchError,
    StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)

N = 5000


def read_all(store, batch_size=777, **kw):
    ids, vecs, pays = [], [], []
    for b in store.iter_batches(batch_size, **kw):
        ids += b.ids
        vecs.append(b.vectors)
        pays += b.payloads if b.payloads is not None else [None] * len(b)
    return ids, (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)), pays


def write(uri, ids, x, payloads=None, metric="ip", id_type="int", batch=1000, flush_every=1):
    s = open_store(uri)
    s.create(x.shape[1], metric, id_type=id_type)
    for k, a in enumerate(range(0, len(ids), batch)):
        s.upsert(Batch(ids[a:a + batch], x[a:a + batch], payloads[a:a + batch] if payloads else None))
        if (k + 1) % flush_every == 0:
            s.flush()
    s.close()


def test_round_trip_bit_exact_and_idempotent(tmp_path, real_vectors, payloads_for):
    x = real_vectors(N)
    ids = [int(i) * 13 - 7000 for i in range(N)]
    pays = payloads_for(N)
    uri = f"parquet:{tmp_path}/ds"
    write(uri, ids, x, pays, flush_every=2)
    r = open_store(uri)
    assert (r.count(), r.dim, r.metric, r.id_type) == (N, 384, "ip", "int")
    assert r.payload_fields() == list(pays[0])
    got_ids, got_x, got_p = read_all(r)
    assert got_ids == ids and got_x.tobytes() == x.tobytes() and got_p == pays
    schema = pq.read_schema(next((tmp_path / "ds").glob("part-*.parquet")))
    assert schema.field("vector").type == pa.list_(pa.float32(), 384)  # fixed_size_list<float32>[384]
    write(uri, ids, x, pays, batch=700)  # everything again: replaces, never duplicates
    got_ids2, got_x2, got_p2 = read_all(open_store(uri))
    assert sorted(got_ids2) == sorted(ids) and len(got_ids2) == N
    order = np.argsort(got_ids2)
    assert got_x2[order].tobytes() == x[np.argsort(ids)].tobytes()
    assert not list((tmp_path / "ds").glob("*.tmp"))


def test_string_ids_and_reserved_payload_names(tmp_path, real_vectors):
    x = real_vectors(300)
    ids = [f"pkg/{i}" for i in range(300)]
    pays = [{"id": i, "vector": "not a vector", "text": f"t{i}"} for i in range(300)]
    write(f"parquet:{tmp_path}/s", ids, x, pays, metric="cosine", id_type="str", batch=100)
    r = open_store(f"parquet:{tmp_path}/s")
    assert (r.id_type, r.metric) == ("str", "cosine")
    got_ids, got_x, got_p = read_all(r, 64)
    assert got_ids == ids and got_x.tobytes() == x.tobytes() and got_p == pays
    g = r.get(["pkg/7", "missing", 7, "pkg/1"])
    assert g.ids == ["pkg/7", "pkg/1"] and np.array_equal(g.vectors, x[[7, 1]]) and g.payloads[1]["id"] == 1
    with pytest.raises(IdTypeError):
        r.upsert(Batch([5], x[:1]))


def test_replacing_rows_rewrites_only_their_part(tmp_path, real_vectors):
    x = real_vectors(3000)
    uri = f"parquet:{tmp_path}/u"
    write(uri, list(range(3000)), x, [{"v": 1}] * 3000, metric="l2")
    before = sorted(p.name for p in (tmp_path / "u").glob("part-*"))
    s = open_store(uri)
    s.create(384, "l2")
    s.upsert(Batch([10, 11, 10], x[[100, 101, 102]], [{"v": 2}, {"v": 3}, {"v": 4}]))  # last 10 wins
    s.flush()
    after = sorted(p.name for p in (tmp_path / "u").glob("part-*"))
    assert len(before) == 3 and len(after) == 4 and set(before[1:]) <= set(after) and before[0] not in after
    r = open_store(uri)
    assert r.count() == 3000
    g = r.get([10, 11, 12])
    assert np.array_equal(g.vectors, x[[102, 101, 12]]) and [p["v"] for p in g.payloads] == [4, 3, 1]


def _plain_dataset(root, x, ids):
    """Someone else's export: list<double> vectors, a struct column, nested folders, small row groups."""
    (root / "year=2024").mkdir(parents=True)
    (root / "year=2025").mkdir()
    half = len(ids) // 2
    for folder, sl in (("year=2024", slice(0, half)), ("year=2025", slice(half, None))):
        table = pa.table({
            "id": pa.array(ids[sl], pa.string()),
            "vector": pa.array(x[sl].astype(np.float64).tolist(), pa.list_(pa.float64())),
            "info": pa.array([{"n": i, "tag": "x"} for i in range(len(ids[sl]))]),
        })
        pq.write_table(table, root / folder / "data.parquet", row_group_size=300)
    pq.write_table(pa.table({"junk": [1]}), root / "_SUCCESS.parquet")  # skipped: starts with "_"


def test_plain_dataset_with_list_vectors(tmp_path, real_vectors):
    x = real_vectors(2000)
    ids = [f"r{i}" for i in range(2000)]
    _plain_dataset(tmp_path / "plain", x, ids)
    r = open_store(f"parquet:{tmp_path}/plain", metric="ip")
    assert (r.count(), r.dim, r.metric, r.id_type) == (2000, 384, "ip", "str")
    assert open_store(f"parquet:{tmp_path}/plain").metric == "cosine"  # default without our metadata
    got_ids, got_x, got_p = read_all(r, 512)
    assert got_ids == ids and got_x.tobytes() == x.tobytes()  # float64 -> float32 of float32 values: exact
    assert got_p[5] == {"info": {"n": 5, "tag": "x"}}
    with pytest.raises(StoreUsageError):
        r.create(384, "ip", id_type="str")  # a source we did not write is never modified


def test_cursor_resume_and_shards(tmp_path, real_vectors):
    x = real_vectors(N)
    uri = f"parquet:{tmp_path}/c"
    write(uri, list(range(N)), x, [{"i": i} for i in range(N)], batch=1300)  # 4 files of 1300, 1300, 1300, 1100
    full_ids, full_x, _ = read_all(open_store(uri), 600)
    it = open_store(uri).iter_batches(600)
    for _ in range(4):
        cursor = next(it).cursor
    cursor = json.loads(json.dumps(cursor))
    assert cursor == {"file": 1, "row": 1100}  # (file index, row offset): 2,400 rows read
    ids, rest, pays = read_all(open_store(uri), 600, cursor=cursor)
    assert ids == full_ids[2400:] and rest.tobytes() == full_x[2400:].tobytes() and pays[0] == {"i": 2400}
    shards = open_store(uri).shards(3)
    assert len(shards) == 3
    parts = [read_all(open_store(uri), 500, shard=sh)[0] for sh in shards]
    assert sum(parts, []) == full_ids and all(parts)
    sh = shards[1]
    first = next(open_store(uri).iter_batches(250, shard=sh))
    tail = read_all(open_store(uri), 250, shard=sh, cursor=first.cursor)[0]
    assert first.ids + tail == parts[1]
    with pytest.raises(StoreUsageError):
        next(open_store(uri).iter_batches(250, shard=sh, cursor={"file": 99, "row": 0}))


def test_sample_is_seeded_uniform_and_matches_rows(tmp_path, real_vectors):
    x = real_vectors(N)
    uri = f"parquet:{tmp_path}/smp"
    write(uri, list(range(N)), x, [{"row": i} for i in range(N)])
    s = open_store(uri)
    a, b, c = s.sample(1000, seed=3), s.sample(1000, seed=3), s.sample(1000, seed=4)
    assert a.ids == b.ids and a.ids != c.ids and len(set(a.ids)) == 1000
    assert s.sample(10, seed=3).ids == a.ids[:10]
    assert np.array_equal(a.vectors, x[a.ids]) and [p["row"] for p in a.payloads] == a.ids
    counts = np.bincount(np.array(a.ids) // 1000, minlength=5)
    assert counts.min() > 150 and counts.max() < 250


def test_errors_are_typed(tmp_path, real_vectors):
    x = real_vectors(20)
    with pytest.raises(StoreNotFoundError):
        open_store(f"parquet:{tmp_path}/missing").count()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UnreadableStoreError):
        open_store(f"parquet:{bad}").count()
    nocol = tmp_path / "nocol"
    nocol.mkdir()
    pq.write_table(pa.table({"key": [1], "emb": [[1.0, 2.0]]}), nocol / "a.parquet")
    with pytest.raises(UnreadableStoreError):
        open_store(f"parquet:{nocol}").count()
    assert open_store(f"parquet:{nocol}", id_column="key", vector_column="emb").get([1]).vectors.tolist() == [[1.0, 2.0]]
    for name, vectors, err in (("nan", [[1.0, float("nan")], [1.0, 2.0]], InvalidVectorsError),
                               ("ragged", [[1.0, 2.0], [1.0]], DimensionMismatchError),
                               ("null", [[1.0, 2.0], None], UnreadableStoreError)):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"id": [1, 2], "vector": vectors}), tmp_path / name / "a.parquet")
        with pytest.raises(err):
            read_all(open_store(f"parquet:{tmp_path}/{name}"))
    s = open_store(f"parquet:{tmp_path}/w")
    s.create(384, "ip")
    nan = x.copy()
    nan[2, 3] = np.nan
    with pytest.raises(InvalidVectorsError):
        s.upsert(Batch(list(range(20)), nan))
    with pytest.raises(DimensionMismatchError):
        s.upsert(Batch(list(range(20)), x[:, :10]))
    with pytest.raises(IdTypeError):
        s.upsert(Batch(["a"] * 20, x))
    s.upsert(Batch(list(range(20)), x))
    s.close()
    with pytest.raises(DimensionMismatchError):
        open_store(f"parquet:{tmp_path}/w").create(768, "ip")
    with pytest.raises(MetricMismatchError):
        open_store(f"parquet:{tmp_path}/w").create(384, "l2")
    assert open_store(f"parquet:{tmp_path}/w").count() == 20


def test_empty_dataset_and_crash_leftovers(tmp_path, real_vectors):
    x = real_vectors(100)
    uri = f"parquet:{tmp_path}/e"
    open_store(uri).create(384, "l2")
    e = open_store(uri)
    assert e.exists() and e.count() == 0 and e.dim == 384 and read_all(e)[0] == []
    with pytest.raises(EmptyStoreError):
        e.sample(5)
    write(uri, list(range(100)), x, metric="l2")
    # A flush that died before its commit leaves an unlisted part and a temp file: readers ignore them...
    pq.write_table(pa.table({"id": [1], "vector": [[0.0] * 384]}), tmp_path / "e" / "part-000099.parquet")
    (tmp_path / "e" / "part-000100.parquet.tmp").write_bytes(b"partial")
    assert open_store(uri).count() == 100
    s = open_store(uri)
    s.create(384, "l2")  # ...and the next writer sweeps them
    assert not (tmp_path / "e" / "part-000099.parquet").exists()
    assert not list((tmp_path / "e").glob("*.tmp"))
    assert np.array_equal(s.get([1]).vectors, x[[1]])
