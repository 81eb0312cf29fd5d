"""Milvus connector on Milvus Lite (embedded) and on a real Milvus server (tests/servers.py): schema detection,
ids, cursor, shards, errors, credentials. Tests taking `milvus_at` run on both."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from connectors import Batch, open_store
from connectors.errors import (
    CredentialsError, DimensionMismatchError, EmptyStoreError, IdTypeError, InvalidVectorsError,
    MetricMismatchError, StoreLockedError, StoreNotFoundError, StoreUsageError,
)

pytest.importorskip("pymilvus")
N = 300


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("milvus") / "test.db"


@pytest.fixture(params=["lite", "server"])
def milvus_at(request, db):
    """uri(collection) on Milvus Lite, or on the session's Milvus server (skipped where none can run)."""
    if request.param == "lite":
        return lambda name: f"milvus:{db}#{name}"
    server = request.getfixturevalue("milvus_server")
    return lambda name: server.uri(f"store_{name}")


@pytest.fixture(scope="module")
def vectors(real_vectors):
    return real_vectors(N)


def _fill(uri, vectors, ids, payloads=None, metric="ip", id_type="int", **options):
    store = open_store(uri, **options)
    store.create(vectors.shape[1], metric, id_type=id_type)
    store.upsert(Batch(list(ids), vectors, payloads))
    store.flush()
    return store


def test_string_keys_cursor_resume_and_shards(milvus_at, vectors):
    # Quotes and backslashes must survive the `pk > "..."` filters used by the cursor and the shards.
    ids = [f'pkg "{i}" \\ ü' if i % 3 == 0 else f"pkg-{i:04d}" for i in range(N)]
    store = _fill(milvus_at("strkeys"), vectors, ids, [{"row": i} for i in range(N)], id_type="str")
    assert (store.count(), store.dim, store.metric, store.id_type) == (N, 384, "ip", "str")
    batches = list(store.iter_batches(64))
    assert [len(b) for b in batches] == [64, 64, 64, 64, 44]
    resumed = [x for b in store.iter_batches(64, cursor=batches[1].cursor) for x in b.ids]
    assert resumed == [x for b in batches[2:] for x in b.ids]
    parts = store.shards(4)
    assert len(parts) == 4
    per_shard = [[x for b in store.iter_batches(50, shard=s) for x in b.ids] for s in parts]
    assert sorted(sum(per_shard, [])) == sorted(ids)
    assert all(len(p) == N // 4 for p in per_shard)  # equal-count boundaries
    got = store.get([ids[5], ids[6], "missing"])
    assert got.ids == [ids[5], ids[6]] and np.array_equal(got.vectors, vectors[[5, 6]])
    assert got.payloads == [{"row": 5}, {"row": 6}]
    store.close()


def test_int_ids_into_string_key_are_mapped_and_restored(milvus_at, vectors):
    ids = [-5, 2**63 - 1, 2**70, "text-id", 7]
    store = _fill(milvus_at("mixed"), vectors[:5], ids, [{"k": i, "big": 2**66 + i} for i in range(5)],
                  id_type="str")
    back = list(store.iter_batches(10))[0]
    assert sorted(map(repr, back.ids)) == sorted(map(repr, ids))
    for x, p, v in zip(back.ids, back.payloads, back.vectors):
        i = ids.index(x)
        assert p == {"k": i, "big": 2**66 + i} and np.array_equal(v, vectors[i])
    assert store.sample(3, seed=1).ids == store.sample(3, seed=1).ids
    store.close()


def test_existing_collection_schema_scalars_dynamic_and_vector_choice(db, vectors):
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(db))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("doc_id", DataType.INT64, is_primary=True)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    schema.add_field("emb_a", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("emb_b", DataType.FLOAT_VECTOR, dim=8)
    index = client.prepare_index_params()
    index.add_index(field_name="emb_a", index_type="FLAT", metric_type="COSINE")
    index.add_index(field_name="emb_b", index_type="FLAT", metric_type="L2")
    client.create_collection("twovec", schema=schema, index_params=index)
    client.upsert("twovec", [{"doc_id": i, "title": f"t{i}", "emb_a": vectors[i], "emb_b": np.ones(8, np.float32),
                              "extra": i * 2} for i in range(20)])
    with pytest.raises(StoreUsageError, match="emb_a, emb_b") as e:
        open_store(f"milvus:{db}#twovec").dim
    assert "vector_field=" in str(e.value)
    store = open_store(f"milvus:{db}#twovec", vector_field="emb_a")
    assert (store.dim, store.metric, store.id_type, store.count()) == (384, "cosine", "int", 20)
    assert store.payload_fields() == ["title"]
    b = list(store.iter_batches(100))[0]
    assert b.ids == list(range(20)) and np.array_equal(b.vectors, vectors[:20])  # Milvus keeps cosine rows raw
    assert b.payloads[3] == {"title": "t3", "extra": 6}
    assert open_store(f"milvus:{db}#twovec", vector_field="emb_b").metric == "l2"
    preferring = open_store(f"milvus:{db}#twovec")
    preferring.select_vector("emb_b")  # settles the choice the options left open...
    assert preferring.dim == 8 and set(preferring.describe_schema()["vectors"]) == {"emb_a", "emb_b"}
    chosen = open_store(f"milvus:{db}#twovec", vector_field="emb_a")
    chosen.select_vector("emb_b")  # ...but never overrides vector_field=
    assert chosen.dim == 384
    store.close()


def test_small_request_limit_splits_upserts_and_stays_idempotent(milvus_at, vectors):
    uri = milvus_at("chunks")
    store = _fill(uri, vectors, range(N), [{"text": "x" * 200}] * N, max_request_bytes=20_000)  # ~10 rows/request
    store.upsert(Batch(list(range(N)), vectors, [{"text": "y"}] * N))
    store.flush()
    assert store.count() == N
    assert all(p == {"text": "y"} for b in store.iter_batches(100) for p in b.payloads)
    store.close()


def test_errors_name_the_fix(milvus_at, db, vectors):
    store = _fill(milvus_at("errs"), vectors[:10], range(10))
    with pytest.raises(StoreNotFoundError, match="errs"):  # lists the existing collections
        open_store(milvus_at("nope")).count()
    with pytest.raises(StoreNotFoundError):
        open_store(f"milvus:{db.parent}/absent.db#x").count()
    with pytest.raises(StoreUsageError, match=".db"):
        open_store(f"milvus:{db.parent}/file.sqlite#x")
    with pytest.raises(StoreUsageError, match="collection"):
        open_store(milvus_at("x").partition("#")[0])
    with pytest.raises(DimensionMismatchError):
        store.upsert(Batch([1], np.zeros((1, 8), np.float32)))
    with pytest.raises(DimensionMismatchError):
        store.create(8, "ip")
    bad = vectors[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(InvalidVectorsError):
        store.upsert(Batch([1, 2], bad))
    with pytest.raises(MetricMismatchError):
        store.create(384, "l2")
    with pytest.raises(IdTypeError, match="id_type='str'"):
        store.upsert(Batch(["a-string"], vectors[:1]))
    with pytest.raises(IdTypeError):
        store.upsert(Batch([2**63], vectors[:1]))
    with pytest.raises(IdTypeError):
        store.create(384, "ip", id_type="str")
    assert store.count() == 10  # nothing half-written by the refused calls
    empty = open_store(milvus_at("empty"))
    empty.create(384, "ip")
    with pytest.raises(EmptyStoreError):
        empty.sample(5)
    store.close()
    empty.close()


def test_lite_file_open_in_another_process_is_locked(tmp_path, vectors):
    db = tmp_path / "locked.db"
    _fill(f"milvus:{db}#c", vectors[:5], range(5)).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from connectors import open_store
        s = open_store("milvus:{db}#c"); s.count()
        print("ready", flush=True); sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="another process"):
            open_store(f"milvus:{db}#c").count()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_server_uri_credentials_come_from_env_or_file_never_the_uri(tmp_path, monkeypatch):
    with pytest.raises(CredentialsError) as e:
        open_store("milvus:https://root:Sup3rSecret@milvus.example:19530#docs")
    assert "Sup3rSecret" not in str(e.value) and "MILVUS_TOKEN" in str(e.value)
    monkeypatch.setenv("MILVUS_USER", "root")
    with pytest.raises(CredentialsError, match="MILVUS_PASSWORD"):
        open_store("milvus:https://milvus.example:19530#docs")
    monkeypatch.setenv("MILVUS_PASSWORD", "Sup3rSecret")
    store = open_store("milvus:https://milvus.example:19530#docs")
    assert store._server.tls and "Sup3rSecret" not in repr(store) + store.uri + repr(store._creds)
    from connectors.credentials import milvus_token
    assert milvus_token(store._creds) == "root:Sup3rSecret"
    creds_file = tmp_path / "milvus.toml"
    creds_file.write_text('token = "tok-from-file-123"\n')
    store = open_store("milvus:http://milvus.example:19530#docs", credentials_file=str(creds_file))
    assert milvus_token(store._creds) == "tok-from-file-123" and not store._server.tls


def test_a_preferred_vector_does_not_break_a_single_vector_collection(milvus_at, vectors):
    store = _fill(milvus_at("single"), vectors[:10], range(10))
    store.select_vector("emb")  # e.g. a destination created before schemas were carried, resumed now
    assert (store.dim, store.count()) == (384, 10) and store.describe_schema()["vector"] == "vector"
    store.close()
